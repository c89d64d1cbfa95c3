// Package pgtest runs a throwaway PostgreSQL server for the tests of one
// test binary: initdb in a temporary directory, postgres on a free
// 127.0.0.1 port with fsync off, stopped and deleted when the tests end.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and get a fresh schema with a pool bound to it in each test:
//
//	pool := pgtest.Pool(t)
//
// The binaries are looked up in $REBOUND_PG_BIN, then $PATH, then
// /usr/local/bin and Debian's /usr/lib/postgresql/<version>/bin (newest
// first). When none is found the tests that need the server skip, saying
// why; with CI=true they fail instead. PostgreSQL refuses to run as root,
// so as root the server runs as the user "nobody" (or $REBOUND_PG_USER),
// which owns the temporary directory (made under /tmp, or
// $REBOUND_PG_TMPDIR, so that user can reach it).
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

// server is the cluster of this test binary, set by Main.
var server struct {
	dsn     string // connection string of the postgres database; "" when not running
	why     string // why there is no server, when dsn is ""
	schemas atomic.Int64
}

// Main starts the server, runs the tests, stops the server, checks for
// leaked goroutines (goleak) and exits. When the server cannot start, the
// tests still run: those that need it skip or fail (see DSN).
func Main(m *testing.M) {
	stop, err := start()
	if err != nil {
		server.why = err.Error()
	}
	code := m.Run()
	if stop != nil {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stopping postgres:", err)
			code = max(code, 1)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: errors on successful test run:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// DSN returns the connection string of the server's "postgres" database,
// or skips t (fails it with CI=true) when there is no server.
func DSN(t testing.TB) string {
	t.Helper()
	if server.dsn == "" {
		why := server.why
		if why == "" {
			why = "pgtest.Main did not run"
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("no PostgreSQL server (CI=true, so this fails): %s", why)
		}
		t.Skipf("no PostgreSQL server, skipping: %s", why)
	}
	return server.dsn
}

// Pool creates a new schema and returns a pool whose connections use it as
// their search_path, so each test sees empty tables of its own. The pool
// is closed when t ends; the schema is left to die with the server.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PoolIn(t, NewSchema(t))
}

// NewSchema creates a new, empty schema and returns its name.
func NewSchema(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	name := "t" + strconv.FormatInt(server.schemas.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	return name
}

// PoolIn returns a pool whose connections use schema as their search_path,
// closed when t ends. Two pools on one schema are two "servers" on one
// database.
func PoolIn(t testing.TB, schema string) *pgxpool.Pool {
	t.Helper()
	return PoolWith(t, schema, nil)
}

// PoolWith is PoolIn with the pool's configuration passed to edit (when
// non-nil) before the pool is made.
func PoolWith(t testing.TB, schema string, edit func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(DSN(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 8
	if edit != nil {
		edit(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Binary returns the path of the PostgreSQL program name (initdb,
// postgres), or an error saying where it was looked for.
func Binary(name string) (string, error) {
	dirs := []string{os.Getenv("REBOUND_PG_BIN")}
	dirs = append(dirs, filepath.SplitList(os.Getenv("PATH"))...)
	dirs = append(dirs, "/usr/local/bin")
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(debian, func(i, j int) bool { return versionOf(debian[i]) > versionOf(debian[j]) })
	dirs = append(dirs, debian...)
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $REBOUND_PG_BIN, $PATH, /usr/local/bin or /usr/lib/postgresql/*/bin (apt-get install postgresql)", name)
}

// versionOf returns the major version in a Debian path
// /usr/lib/postgresql/<version>/bin, or 0.
func versionOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// start creates and starts the cluster and returns the function that stops
// it and removes its files.
func start() (stop func() error, err error) {
	initdb, err := Binary("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := Binary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	// Another user must reach the directory: as root, make it under /tmp
	// (world-searchable) rather than a $TMPDIR that may be root's alone.
	base := ""
	if cred != nil {
		base = os.Getenv("REBOUND_PG_TMPDIR")
		if base == "" {
			base = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(base, "pgtest-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			cleanup()
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust",
		"--locale=C", "--encoding=UTF8", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = env()
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 5 { // a free port can be taken between the probe and the bind
		port, err := freePort()
		if err != nil {
			cleanup()
			return nil, err
		}
		stop, err := run(postgres, data, port, cred)
		if err == nil {
			server.dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return func() error {
				err := stop()
				cleanup()
				return err
			}, nil
		}
		lastErr = err
	}
	cleanup()
	return nil, lastErr
}

// credential returns the user to run PostgreSQL as when this process is
// root, or nil to run it as this process's user.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("REBOUND_PG_USER")
	if name == "" {
		name = "nobody"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root and PostgreSQL refuses root: no user %q to run it as (set REBOUND_PG_USER): %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q: %v", name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// env is the environment of the PostgreSQL processes: this one's, less
// the variables that would point them elsewhere, in the C locale.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "LC_ALL=C")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ready is the line postgres logs once it accepts connections.
const ready = "database system is ready to accept connections"

// run starts postgres on port and waits until it logs that it is ready,
// or exits. The server listens only on 127.0.0.1 (no Unix socket) and
// trades durability for speed: fsync, full-page writes and synchronous
// commit are off, which is fine for a cluster deleted after the tests.
func run(postgres, data string, port int, cred *syscall.Credential) (stop func() error, err error) {
	cmd := exec.Command(postgres, "-D", data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", "",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic",
		"-c", "log_connections=off", "-c", "log_disconnections=off")
	// Pdeathsig stops the server if the test binary dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	cmd.Dir = filepath.Dir(data)
	cmd.Env = env()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The log is read until the server exits: a full pipe would block it.
	var (
		mu     sync.Mutex
		logBuf bytes.Buffer
	)
	readyc := make(chan struct{})
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sawReady := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if logBuf.Len() < 64<<10 {
				logBuf.WriteString(line)
				logBuf.WriteByte('\n')
			}
			mu.Unlock()
			if !sawReady && strings.Contains(line, ready) {
				sawReady = true
				close(readyc)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-logDone // Wait must not close the pipe while it is read
		exited <- cmd.Wait()
	}()
	log := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.String()
	}
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	select {
	case <-readyc:
	case err := <-exited:
		return nil, fmt.Errorf("postgres exited before it was ready: %v\n%s", err, log())
	case <-timeout.C:
		cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("postgres not ready after 60 s\n%s", log())
	}
	return func() error {
		// SIGINT is PostgreSQL's fast shutdown: clients are disconnected.
		cmd.Process.Signal(syscall.SIGINT)
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-exited:
			return nil
		case <-t.C:
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("postgres ignored SIGINT for 30 s; killed\n%s", log())
		}
	}, nil
}
