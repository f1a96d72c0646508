// cri-version-bench times unary Version calls on one connection, dialing the way kubelet 1.26
// did (the socket path as target with a unix dialer: :authority is the path), or with
// -authority to send another one. It prints the p50 and p90 in microseconds.
//
//	cri-version-bench -socket /run/berth/berth.sock [-authority localhost] [-n 3000] [-warmup 300]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	socket := flag.String("socket", "", "runtime socket path")
	authority := flag.String("authority", "", ":authority to send (default: the socket path, as kubelet 1.26)")
	n := flag.Int("n", 3000, "timed calls")
	warmup := flag.Int("warmup", 300, "untimed calls first")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-version-bench -socket PATH [-authority A] [-n N]")
		os.Exit(2)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
	}
	if *authority != "" {
		opts = append(opts, grpc.WithAuthority(*authority))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := grpc.DialContext(ctx, *socket, opts...)
	cancel()
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	call := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"}); err != nil {
			fail(err)
		}
	}
	for i := 0; i < *warmup; i++ {
		call()
	}
	us := make([]float64, *n)
	for i := range us {
		t0 := time.Now()
		call()
		us[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	sort.Float64s(us)
	fmt.Printf("Version p50 %.0f us  p90 %.0f us  (%d calls, grpc-go v1.49)\n", us[len(us)/2], us[len(us)*9/10], *n)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "FAIL cri-version-bench: %v\n", err)
	os.Exit(1)
}
