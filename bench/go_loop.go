// Benchmark 2's Go target: crypto/tls (*Conn).Write in a loop, so the time
// per call is Go's own work plus whatever probes sit on it.
//
//	go_loop CERT KEY SIZE
//
// Does a TLS handshake between a client and a server over net.Pipe (then
// the server end discards the ciphertext), prints "ready", then for each line
// "N" on stdin times N calls of Write(SIZE bytes) and prints
// "ns_per_call=X"; exits at EOF.
package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "go_loop: %s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go_loop CERT KEY SIZE")
		os.Exit(2)
	}
	size, err := strconv.Atoi(os.Args[3])
	if err != nil {
		die("size", err)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		die("load certificate", err)
	}
	a, b := net.Pipe()
	// no session tickets: the server writes nothing after its handshake
	server := tls.Server(b, &tls.Config{
		Certificates:           []tls.Certificate{cert},
		SessionTicketsDisabled: true,
	})
	go func() {
		if err := server.Handshake(); err != nil {
			die("server handshake", err)
		}
		// a read of nothing (it returns at once): Read stays in the binary, and
		// ecap's gotls takes a program with both Read and Write
		_, _ = server.Read(nil)
		// the ciphertext thrown away unread: only the client's Write is timed (and probed)
		_, _ = io.Copy(io.Discard, b)
	}()
	client := tls.Client(a, &tls.Config{InsecureSkipVerify: true})
	if err := client.Handshake(); err != nil {
		die("handshake", err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = 'x'
	}
	fmt.Println("ready")
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		n, _ := strconv.Atoi(strings.TrimSpace(lines.Text()))
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := client.Write(data); err != nil {
				die("Write", err)
			}
		}
		ns := float64(time.Since(start).Nanoseconds())
		perCall := 0.0
		if n > 0 {
			perCall = ns / float64(n)
		}
		fmt.Printf("ns_per_call=%.1f\n", perCall)
	}
}
