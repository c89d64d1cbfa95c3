package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
)

// BenchmarkLoopback is BenchmarkOverhead over a real connection: each
// library sends through a pooled go-cleanhttp transport to an
// httptest.Server on 127.0.0.1 that reads the request and answers 200
// with a short body. Every call is made as a program makes it: a fresh
// request from http.NewRequest, http.Client.Do, the response body read
// to its end and closed. seq is one caller; par is b.RunParallel, one
// caller per GOMAXPROCS, sharing the library and the connection pool.
// The library's cost is the difference with "bare"; on loopback it is a
// small part of the round trip, which is the point.
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	url := srv.URL + "/v1/things"
	for _, mode := range []string{"seq", "par"} {
		for _, method := range []string{"GET", "POST"} {
			for _, p := range shuffled(overheadPeers) {
				b.Run("mode="+mode+"/method="+method+"/lib="+p.name, func(b *testing.B) {
					pool := cleanhttp.DefaultPooledTransport()
					defer pool.CloseIdleConnections()
					rt := p.wrap(pool)
					if mode == "seq" {
						benchFresh(b, rt, "Do", method, url)
						return
					}
					client := &http.Client{Transport: rt}
					b.ReportAllocs()
					defer reportCPU(b)()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							resp, err := client.Do(freshRequest(b, method, url))
							if err != nil {
								b.Error(err)
								return
							}
							if resp.StatusCode != http.StatusOK {
								b.Errorf("status %d, want 200", resp.StatusCode)
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					})
				})
			}
		}
	}
}
