package learnedcut

import (
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMark(t *testing.T) {
	ctx := context.Background()
	if Marked(ctx) {
		t.Fatal("an unmarked context reads as marked")
	}
	marked := Mark(ctx)
	if !Marked(marked) {
		t.Fatal("a marked context reads as unmarked")
	}
	child, cancel := context.WithCancel(marked)
	defer cancel()
	if !Marked(child) {
		t.Error("the mark is lost in a derived context")
	}
	if Marked(context.WithValue(ctx, struct{}{}, true)) {
		t.Error("another key's true value reads as the mark")
	}
}
