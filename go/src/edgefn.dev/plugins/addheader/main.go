// Command addheader is built as addheader.so, a plugin library with only add-header.
package main

import (
	"edgefn.dev/envoygo/http"
	"edgefn.dev/plugins/filters"
)

func init() {
	p := filters.AddHeader("addheader")
	http.RegisterHttpFilterFactoryAndConfigParser(p.Name, p.Factory, p.Parser)
}

func main() {}
