package rebound

import (
	"os"
	"strings"
	"testing"
)

// Every field of a policy is documented, under its own name, in
// ParsePolicyFile's table and in docs/configuration.md's, so the three
// cannot drift.
func TestPolicyFieldsAreDocumented(t *testing.T) {
	src, err := os.ReadFile("policyfile.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range fieldNames {
		if !strings.Contains(string(src), "//\t"+name+" ") && !strings.Contains(string(src), `"`+name+`"`) {
			t.Errorf("field %s is not in ParsePolicyFile's doc", name)
		}
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("field %s is not in docs/configuration.md", name)
		}
	}
}
