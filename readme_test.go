package rebound_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlocks returns the fenced ```go blocks of a Markdown text.
func goBlocks(md string) []string {
	var blocks []string
	rest := md
	for {
		i := strings.Index(rest, "\n```go\n")
		if i < 0 {
			return blocks
		}
		rest = rest[i+len("\n```go\n"):]
		j := strings.Index(rest, "\n```\n")
		if j < 0 {
			return blocks
		}
		blocks = append(blocks, rest[:j+1])
		rest = rest[j:]
	}
}

// Every complete program in the README (a ```go block that starts with
// "package main", the Quick start among them) builds against this
// module, imports and all: a newcomer can paste it.
func TestReadmeProgramsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs with the go command")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	programs := 0
	for i, b := range goBlocks(string(readme)) {
		if !strings.HasPrefix(b, "package main\n") {
			continue
		}
		programs++
		dir := t.TempDir()
		gomod := "module readme\n\ngo 1.26.0\n\nrequire github.com/rebound-http/rebound v0.0.0\n\nreplace github.com/rebound-http/rebound => " + root + "\n"
		for name, data := range map[string][]byte{"go.mod": []byte(gomod), "go.sum": sum, "main.go": []byte(b)} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// -mod=mod resolves the replaced module's requirements from the
		// module cache the repository's own build filled.
		cmd := exec.Command("go", "build", "-mod=mod", "-o", os.DevNull, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("README program %d does not build: %v\n%s\n%s", i+1, err, out.String(), b)
		}
	}
	if programs < 2 {
		t.Errorf("README has %d complete programs, want the Quick start and the per-host one", programs)
	}
}

// The README stays short and starts with what a newcomer needs.
func TestReadmeFirstScreen(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	if n := strings.Count(s, "\n"); n > 400 {
		t.Errorf("README is %d lines, the limit is 400: move the detail to docs/", n)
	}
	first := s[:strings.Index(s, "## Quick start")]
	for _, want := range []string{"go get github.com/rebound-http/rebound", "make demo", "make test"} {
		if !strings.Contains(first, want) {
			t.Errorf("the README's first screen lacks %q", want)
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// anchors returns the GitHub anchors of a Markdown text's headings.
func anchors(md string) map[string]bool {
	a := make(map[string]bool)
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		h = strings.ToLower(drop.ReplaceAllString(h, ""))
		a[strings.ReplaceAll(h, " ", "-")] = true
	}
	return a
}

// Every relative link of the README and the guides reaches a file, and
// every #anchor a heading of its file.
func TestDocLinks(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md", "CHANGELOG.md")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			body, err := os.ReadFile(target)
			if err != nil {
				t.Errorf("%s: link %q: %v", f, link, err)
				continue
			}
			if anchor != "" && !anchors(string(body))[anchor] {
				t.Errorf("%s: link %q: no heading %q in %s", f, link, anchor, target)
			}
		}
	}
}
