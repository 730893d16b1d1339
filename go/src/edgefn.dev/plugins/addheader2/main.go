// Command addheader2 is built as addheader2.so: add-header again, in a second library whose
// bytes differ from addheader.so only by the library name it sends in x-edgefn-library.
// Tests use the pair to load two distinct Go libraries into one process.
package main

import (
	"edgefn.dev/envoygo/http"
	"edgefn.dev/plugins/filters"
)

func init() {
	p := filters.AddHeader("addheader2")
	http.RegisterHttpFilterFactoryAndConfigParser(p.Name, p.Factory, p.Parser)
}

func main() {}
