package keymark_test

import (
	"context"
	"testing"

	"github.com/rebound-http/rebound/internal/keymark"
	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type other struct{}

func TestGenerated(t *testing.T) {
	parent := context.WithValue(t.Context(), other{}, "v")
	marked := &keymark.Ctx{Context: parent, Key: "k1"}
	assert.True(t, keymark.Generated(marked, "k1"), "the marked key")
	assert.False(t, keymark.Generated(marked, "k2"), "another key, set by the caller")
	assert.False(t, keymark.Generated(marked, ""), "no key")
	assert.False(t, keymark.Generated(parent, "k1"), "no mark")
	assert.False(t, keymark.Generated(nil, "k1"), "no context")
	assert.Equal(t, "v", marked.Value(other{}), "other values come from the parent")
	assert.True(t, keymark.Generated(context.WithValue(marked, other{}, "w"), "k1"), "a context derived from the mark keeps it")
}
