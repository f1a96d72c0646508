// cri-read-bench times one CRI read in a loop through k8s.io/cri-client (kubelet's CRI
// client, so the same headers, deadline and interceptors as kubelet), on one connection. It
// prints "p50 <µs> p90 <µs> calls <n>" on stdout.
//
//	cri-read-bench -socket PATH -method Version|ContainerStatus|PodSandboxStatus|ImageStatus|ListImages
//	               [-id ID] [-image REF] [-n 3000] [-warmup 300]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

func main() {
	socket := flag.String("socket", "", "CRI unix socket path (required)")
	method := flag.String("method", "Version", "the read to time")
	id := flag.String("id", "", "container id (ContainerStatus) or pod id (PodSandboxStatus)")
	image := flag.String("image", "", "image reference (ImageStatus)")
	n := flag.Int("n", 3000, "timed calls")
	warmup := flag.Int("warmup", 300, "untimed calls first")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-read-bench -socket PATH -method M [-id ID] [-image REF] [-n N]")
		os.Exit(2)
	}
	ctx := context.Background()
	endpoint := "unix://" + *socket
	var call func() error
	switch *method {
	case "Version", "ContainerStatus", "PodSandboxStatus":
		rt, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(30 * time.Second).Build(ctx)
		if err != nil {
			fail(err)
		}
		defer rt.Close(ctx)
		switch *method {
		case "Version":
			call = func() error { _, err := rt.Version(ctx, "0.1.0"); return err }
		case "ContainerStatus":
			call = func() error { _, err := rt.ContainerStatus(ctx, *id, false); return err }
		default:
			call = func() error { _, err := rt.PodSandboxStatus(ctx, *id, false); return err }
		}
	case "ImageStatus", "ListImages":
		img, err := remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(30 * time.Second).Build(ctx)
		if err != nil {
			fail(err)
		}
		defer img.Close(ctx)
		spec := &runtimeapi.ImageSpec{Image: *image}
		if *method == "ImageStatus" {
			call = func() error { _, err := img.ImageStatus(ctx, spec, false); return err }
		} else {
			call = func() error { _, err := img.ListImages(ctx, nil); return err }
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown -method %q\n", *method)
		os.Exit(2)
	}
	for i := 0; i < *warmup; i++ {
		if err := call(); err != nil {
			fail(err)
		}
	}
	us := make([]float64, *n)
	for i := range us {
		t0 := time.Now()
		if err := call(); err != nil {
			fail(err)
		}
		us[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	sort.Float64s(us)
	fmt.Printf("p50 %.1f p90 %.1f calls %d\n", us[len(us)/2], us[len(us)*9/10], *n)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cri-read-bench: %v\n", err)
	os.Exit(1)
}
