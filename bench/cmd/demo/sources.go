package main

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sort"
	"strings"
)

// sources are the demo's own files, so that a chart can say which code
// drew it.
//
//go:embed *.go
var sources embed.FS

// sourceFile is the file written beside the chart (demo.src) that names
// the code that drew it; the repository's docs/demo.src is checked
// against the code by TestCommittedChartIsCurrent.
const sourceFile = "demo.src"

// sourceHash returns the SHA-256, in hex, of the demo's Go sources
// without its tests: each file's name, a NUL and its bytes, in name
// order.
func sourceHash() (string, error) {
	names, err := fs.Glob(sources, "*.go")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := sources.ReadFile(n)
		if err != nil {
			return "", err
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sourceLine is the content of demo.src.
func sourceLine(hash string) string {
	return "sha256 of bench/cmd/demo/*.go (tests excluded) that drew demo.png and demo.svg: " + hash + "\n"
}
