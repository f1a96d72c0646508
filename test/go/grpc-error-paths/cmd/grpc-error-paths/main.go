// grpc-error-paths calls berthd's CRI socket the ways a gRPC server must refuse or cut short,
// with grpc-go as kubelet uses it, and prints one line per case: "CASE CODE message".
//
//	grpc-error-paths -socket PATH -container ID
//
// Cases: unknown-method, unknown-service (UNIMPLEMENTED), too-large (a 17 MiB ImageStatus:
// RESOURCE_EXHAUSTED), deadline (ExecSync "sleep 3141" with a 1 s deadline), cancel (ExecSync
// "sleep 3142" cancelled after 1 s), then after (Version on the same connection: still served).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
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
}
