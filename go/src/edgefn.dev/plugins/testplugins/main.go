// Command testplugins is built as testplugins.so (go build -buildmode=c-shared), a Go
// filter plugin library with every edgefn test plugin registered by name.
package main

import (
	"edgefn.dev/envoygo/http"
	"edgefn.dev/plugins/filters"
)

func init() {
	for _, p := range filters.All("testplugins") {
		http.RegisterHttpFilterFactoryAndConfigParser(p.Name, p.Factory, p.Parser)
	}
}

func main() {}
