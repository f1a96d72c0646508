// cri-client-new runs the scenario through k8s.io/cri-client, the CRI client kubelet 1.37
// uses (grpc-go's NewClient with authority "localhost" over the unix socket).
package main

import (
	"context"
	"fmt"
	"os"

	"berth.test/cri-clients/scenario"
	remote "k8s.io/cri-client/pkg"
)

func main() {
	o := scenario.ParseFlags()
	ctx := context.Background()
	endpoint := "unix://" + o.Socket // kubelet's --container-runtime-endpoint form
	rt, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(o.Timeout).Build(ctx)
	if err != nil {
		fail(fmt.Errorf("connecting the runtime service: %w", err))
	}
	defer rt.Close(ctx)
	img, err := remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(o.Timeout).Build(ctx)
	if err != nil {
		fail(fmt.Errorf("connecting the image service: %w", err))
	}
	defer img.Close(ctx)
	if err := scenario.Run(ctx, o, rt, img, os.Stdout); err != nil {
		fail(err)
	}
	fmt.Println("PASS cri-client-new")
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "FAIL cri-client-new: %v\n", err)
	os.Exit(1)
}
