// A SPDY client built on github.com/moby/spdystream (the library behind client-go's SPDY
// transport, at the version apimachinery v0.37 requires), following what apimachinery's
// SpdyRoundTripper and client-go's remotecommand (v4) and portforward do on the wire. The
// streaming tests run it (built by scripts/go-tools.sh) to check the server against the real
// framing and header compression.
//
//	go-spdy-client exec URL PROTOCOLS STATUSFILE   (stdin -> stdin stream, stdout/stderr out)
//	go-spdy-client portforward URL PORT            (stdin -> data stream -> stdout; errors to stderr)
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

func dial(rawURL string, protocols []string) (*spdystream.Connection, string) {
	u, err := url.Parse(rawURL)
	check(err)
	conn, err := net.Dial("tcp", u.Host)
	check(err)
	req, err := http.NewRequest("POST", rawURL, nil)
	check(err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", p)
	}
	check(req.Write(conn))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	check(err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		fail(fmt.Sprintf("upgrade refused: %d %s", resp.StatusCode, body))
	}
	if br.Buffered() > 0 {
		fail("unexpected bytes after the 101 response")
	}
	sc, err := spdystream.NewConnection(conn, false)
	check(err)
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, resp.Header.Get("X-Stream-Protocol-Version")
}

func stream(c *spdystream.Connection, h http.Header) *spdystream.Stream {
	s, err := c.CreateStream(h, nil, false)
	check(err)
	check(s.WaitTimeout(30 * time.Second))
	return s
}

func main() {
	switch os.Args[1] {
	case "exec":
		c, protocol := dial(os.Args[2], strings.Split(os.Args[3], ","))
		fmt.Fprintf(os.Stderr, "protocol=%s\n", protocol)
		h := func(t string) http.Header { return http.Header{"Streamtype": {t}} }
		errorStream := stream(c, h("error"))
		stdin := stream(c, h("stdin"))
		stdout := stream(c, h("stdout"))
		stderr := stream(c, h("stderr"))
		var statusBytes []byte
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); statusBytes, _ = io.ReadAll(errorStream) }()
		go func() { io.Copy(stdin, os.Stdin); stdin.Close() }()
		go func() { defer wg.Done(); io.Copy(os.Stdout, stdout) }()
		go func() { defer wg.Done(); io.Copy(os.Stderr, stderr) }()
		wg.Wait()
		check(os.WriteFile(os.Args[4], statusBytes, 0o600))
		c.Close()
	case "portforward":
		c, _ := dial(os.Args[2], []string{"portforward.k8s.io"})
		h := http.Header{}
		h.Set("Streamtype", "error")
		h.Set("Port", os.Args[3])
		h.Set("Requestid", "0")
		errorStream := stream(c, h)
		errorStream.Close()
		h.Set("Streamtype", "data")
		data := stream(c, h)
		payload, err := io.ReadAll(os.Stdin)
		check(err)
		_, err = data.Write(payload)
		check(err)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(os.Stdout, data) }()
		go func() { defer wg.Done(); io.Copy(os.Stderr, errorStream) }()
		wg.Wait()
		c.Close()
	default:
		fail("unknown command")
	}
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(2)
}
