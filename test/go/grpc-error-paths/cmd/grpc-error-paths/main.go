// grpc-error-paths calls berthd's CRI socket the ways a gRPC server must refuse or cut short,
// with grpc-go as kubelet uses it, and prints one line per case: "CASE CODE message".
//
//	grpc-error-paths -socket PATH -container ID
//
// Cases: unknown-method, unknown-service (UNIMPLEMENTED), too-large (a 17 MiB ImageStatus:
// RESOURCE_EXHAUSTED), deadline (ExecSync "sleep 3141" with a 1 s deadline), cancel (ExecSync
// "sleep 3142" cancelled after 1 s), then after (Version on the same connection: still served),
// exact-limit (a Version request of exactly 16 MiB: served), one-over (16 MiB + 1 byte:
// RESOURCE_EXHAUSTED), concurrent (200 Version calls at once, all answered: "OK 200") and
// cancel-half (12 rounds, each 100 GetContainerEvents streams the server has opened, cancelled
// (RST_STREAM CANCEL) while 100 Version calls run beside them: 1200 cancelled streams, more than
// the server's 1000 concurrent streams, so one left in its stream table per round would get
// later streams refused; "OK 1200").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	socket := flag.String("socket", "", "CRI unix socket path")
	container := flag.String("container", "", "a running container's id (ExecSync cases)")
	flag.Parse()
	if *socket == "" || *container == "" {
		fmt.Fprintln(os.Stderr, "usage: grpc-error-paths -socket PATH -container ID")
		os.Exit(2)
	}
	conn, err := grpc.NewClient("unix://"+*socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	img := runtimeapi.NewImageServiceClient(conn)
	report := func(name string, err error) {
		s, _ := status.FromError(err)
		fmt.Printf("%s %s %s\n", name, s.Code(), strings.ReplaceAll(s.Message(), "\n", " "))
	}
	bg := context.Background()
	with := func(d time.Duration) (context.Context, context.CancelFunc) { return context.WithTimeout(bg, d) }

	ctx, done := with(30 * time.Second)
	report("unknown-method", conn.Invoke(ctx, "/runtime.v1.RuntimeService/NoSuchMethod",
		&runtimeapi.VersionRequest{}, &runtimeapi.VersionResponse{}))
	report("unknown-service", conn.Invoke(ctx, "/runtime.v1alpha2.RuntimeService/Version",
		&runtimeapi.VersionRequest{}, &runtimeapi.VersionResponse{}))
	_, err = img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: strings.Repeat("a", 17<<20)}})
	report("too-large", err)
	done()

	ctx, done = with(time.Second)
	_, err = rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: *container, Cmd: []string{"sleep", "3141"}})
	report("deadline", err)
	done()

	ctx, cancel := context.WithCancel(bg)
	time.AfterFunc(time.Second, cancel)
	_, err = rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: *container, Cmd: []string{"sleep", "3142"}})
	report("cancel", err)

	ctx, done = with(30 * time.Second)
	_, err = rt.Version(ctx, &runtimeapi.VersionRequest{})
	report("after", err)
	done()

	// A Version request whose encoding is exactly `size` bytes (the field's length prefix is
	// 4 bytes long at this size).
	sized := func(size int) *runtimeapi.VersionRequest {
		req := &runtimeapi.VersionRequest{Version: strings.Repeat("v", size-5)}
		if proto.Size(req) != size {
			fmt.Fprintf(os.Stderr, "request of %d bytes, not %d\n", proto.Size(req), size)
			os.Exit(1)
		}
		return req
	}
	ctx, done = with(60 * time.Second)
	_, err = rt.Version(ctx, sized(16<<20))
	report("exact-limit", err)
	_, err = rt.Version(ctx, sized(16<<20+1))
	report("one-over", err)
	done()

	ctx, done = with(60 * time.Second)
	report("concurrent", versions(ctx, rt, 200))
	done()

	report("cancel-half", cancelHalf(rt, 12, 100))
}

// versions runs n Version calls at once; an error of one of them, else nil. Its line then
// says how many were answered.
func versions(ctx context.Context, rt runtimeapi.RuntimeServiceClient, n int) error {
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
			errs <- err
		}()
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		fmt.Printf("# %d answered\n", n)
	}
	return first
}

// cancelHalf runs `rounds` rounds of `half` GetContainerEvents streams beside `half` Version
// calls. A Version answered after the streams were started proves the server read their
// HEADERS (grpc-go writes a connection's frames in the order
// the streams were opened, and the server reads them in order); then every stream is cancelled.
func cancelHalf(rt runtimeapi.RuntimeServiceClient, rounds, half int) error {
	for r := 0; r < rounds; r++ {
		ctx, done := context.WithTimeout(context.Background(), 60*time.Second)
		streamCtx, cancel := context.WithCancel(ctx)
		var wg, opened sync.WaitGroup
		errs := make(chan error, half)
		for i := 0; i < half; i++ {
			wg.Add(1)
			opened.Add(1)
			go func() {
				defer wg.Done()
				s, err := rt.GetContainerEvents(streamCtx, &runtimeapi.GetEventsRequest{})
				opened.Done()
				if err != nil {
					errs <- err
					return
				}
				_, err = s.Recv() // ends with the cancel (no container changes meanwhile)
				if status.Code(err) != codes.Canceled {
					errs <- fmt.Errorf("events stream ended with %v, not the cancel", err)
				}
			}()
		}
		verr := versions(ctx, rt, half)
		opened.Wait()
		_, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		wg.Wait()
		done()
		close(errs)
		if verr != nil {
			return verr
		}
		if err != nil {
			return err
		}
		if err := <-errs; err != nil {
			return err
		}
	}
	fmt.Printf("# %d streams cancelled\n", rounds*half)
	return nil
}
