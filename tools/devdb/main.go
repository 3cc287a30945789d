// Command devdb runs an embedded FerretDB (SQLite backend) that speaks the
// MongoDB wire protocol. It is the development and test database of
// pulp-lazy: no MongoDB server package is available on our machines.
//
// Usage: devdb -listen 127.0.0.1:0 -data DIR
//
// Once the listener accepts connections it prints one line to stdout:
//
//	READY mongodb://127.0.0.1:PORT/
//
// SIGTERM or SIGINT stops it cleanly (exit 0).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (port 0 picks a free port)")
	data := flag.String("data", "", "directory for the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	// The databases hold repository settings (feed credentials in headers): files and folders
	// this process creates, databases added later included, are the owner's alone.
	syscall.Umask(0o077)

	if *data == "" {
		fail("-data is required")
	}
	abs, err := filepath.Abs(*data)
	if err != nil {
		fail(err.Error())
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		fail(err.Error())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("bad -log-level: " + err.Error())
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(NORMAL)",
	})
	if err != nil {
		fail(err.Error())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()

	// MongoDBURI blocks until the listener is bound.
	uri := f.MongoDBURI()
	go indexIDs(ctx, abs, logger)
	fmt.Printf("READY %s\n", uri)
	_ = os.Stdout.Sync()

	<-done
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "devdb: "+msg)
	os.Exit(2)
}
