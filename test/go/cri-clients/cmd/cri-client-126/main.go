// cri-client-126 runs the scenario the way kubelet 1.26 (and crictl 1.26, which vendors its
// client) reached a runtime: grpc-go v1.49 dialing the socket path itself as the target with
// a custom unix dialer, so the HTTP/2 :authority of every call is the socket path.
package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"berth.test/cri-clients/scenario"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize is kubelet's 16 MiB receive limit.
const maxMsgSize = 16 * 1024 * 1024

func main() {
	o := scenario.ParseFlags()
	ctx := context.Background()
	endpoint := "unix://" + o.Socket
	// kubelet 1.26 opened one connection for the runtime service and one for the image service.
	rc, err := dial(ctx, endpoint, o.Timeout)
	if err != nil {
		fail(fmt.Errorf("connecting the runtime service: %w", err))
	}
	defer rc.Close()
	ic, err := dial(ctx, endpoint, o.Timeout)
	if err != nil {
		fail(fmt.Errorf("connecting the image service: %w", err))
	}
	defer ic.Close()
	rt := &runtimeService{c: runtimeapi.NewRuntimeServiceClient(rc), timeout: o.Timeout}
	img := &imageService{c: runtimeapi.NewImageServiceClient(ic), timeout: o.Timeout}
	// kubelet 1.26 validated each connection with a v1 Version call before using it.
	for _, validate := range []func() error{
		func() error { _, err := rt.Version(ctx, ""); return err },
		func() error { _, err := img.ImageFsInfo(ctx); return err },
	} {
		if err := validate(); err != nil {
			fail(fmt.Errorf("validating the CRI v1 API: %w", err))
		}
	}
	if err := scenario.Run(ctx, o, rt, img, os.Stdout); err != nil {
		fail(err)
	}
	fmt.Println("PASS cri-client-126")
}

// dial is kubelet 1.26's remote service connection: util.GetAddressAndDialer turned
// "unix:///path" into the plain path and a dialer, and grpc.DialContext got that path as its
// target, which grpc-go of that time also sent as :authority.
func dial(ctx context.Context, endpoint string, timeout time.Duration) (*grpc.ClientConn, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" {
		return nil, fmt.Errorf("only unix endpoints are supported, got %q", endpoint)
	}
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return grpc.DialContext(ctx, u.Path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "FAIL cri-client-126: %v\n", err)
	os.Exit(1)
}
