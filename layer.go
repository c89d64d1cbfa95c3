package rebound

import (
	"net/http"

	"github.com/rebound-http/rebound/internal/layermark"
)

// Layer wraps the handler of a service that calls other services through
// rebound, so that a stack of such services retries a failure once, at the
// layer nearest to it, rather than at every layer (three layers of four
// attempts each are 64 attempts at the bottom).
//
// When a call the handler made through a rebound Transport, with the
// request's context or one derived from it, gave up after retrying, was
// refused by its breaker, budget or admission, or was told by the server
// below not to retry, the 5xx or 429 the handler then writes carries
// X-Should-Retry: false. rebound's clients take that as a final answer
// (classify.ReasonServerAdvised), as the SDKs of several API providers do:
// the caller above does not retry what this layer already retried. Every
// other response is untouched, and a handler that makes no such call pays
// four small allocations per request (the mark, its context, the
// request's shallow copy that carries it, the writer's wrapper).
//
// A nil h serves with http.DefaultServeMux, as http.Server does.
func Layer(h http.Handler) http.Handler {
	if h == nil {
		h = http.DefaultServeMux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, m := layermark.With(r.Context())
		h.ServeHTTP(&layerWriter{ResponseWriter: w, mark: m}, r.WithContext(ctx))
	})
}

// layerWriter adds X-Should-Retry: false to a failure status written after
// a call below spent its retries.
type layerWriter struct {
	http.ResponseWriter
	mark  *layermark.Mark
	wrote bool
}

func (w *layerWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if (code >= 500 || code == http.StatusTooManyRequests) && w.mark.Spent() {
			w.Header().Set("X-Should-Retry", "false")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *layerWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush flushes the response when the writer below can.
func (w *layerWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wrote {
			w.WriteHeader(http.StatusOK)
		}
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the writer below.
func (w *layerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
