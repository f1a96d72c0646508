// cri-read-bench times CRI reads in a loop through k8s.io/cri-client (kubelet's CRI client, so
// the same headers, deadline and interceptors as kubelet), on one connection per service. With
// one method it prints "p50 <µs> p90 <µs> calls <n>" on stdout. With several (comma-separated)
// it calls them in turn, one of each per round, as kubelet's polls and the side-by-side
// benchmark's reads interleave, and prints one line per method: "<method> p50 <µs> p90 <µs>
// calls <n>".
//
//	cri-read-bench -socket PATH -method Version|ContainerStatus|PodSandboxStatus|ImageStatus|ListImages[,...]
//	               [-id ID] [-pod ID] [-image REF] [-n 3000] [-warmup 300] [-raw]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	cri "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

func main() {
	socket := flag.String("socket", "", "CRI unix socket path (required)")
	methods := flag.String("method", "Version", "the read(s) to time, comma-separated")
	id := flag.String("id", "", "container id (ContainerStatus) or, without -pod, pod id (PodSandboxStatus)")
	podID := flag.String("pod", "", "pod id (PodSandboxStatus) when -id names a container")
	image := flag.String("image", "", "image reference (ImageStatus)")
	n := flag.Int("n", 3000, "timed calls (of each method)")
	warmup := flag.Int("warmup", 300, "untimed calls first (of each method)")
	raw := flag.Bool("raw", false, "also print each method's samples in call order: \"<method> samples <µs> <µs> ...\"")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-read-bench -socket PATH -method M[,M...] [-id ID] [-pod ID] [-image REF] [-n N]")
		os.Exit(2)
	}
	if *podID == "" {
		*podID = *id
	}
	ctx := context.Background()
	endpoint := "unix://" + *socket
	names := strings.Split(*methods, ",")
	// Each service's client is built only when a method needs it: building one checks the
	// endpoint serves that service (the image one calls ImageFsInfo), and the bare Version
	// server serves only Version.
	runtimeClient := sync.OnceValues(func() (cri.RuntimeService, error) {
		return remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(30 * time.Second).Build(ctx)
	})
	imageClient := sync.OnceValues(func() (cri.ImageManagerService, error) {
		return remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(30 * time.Second).Build(ctx)
	})
	spec := &runtimeapi.ImageSpec{Image: *image}
	calls := make([]func() error, len(names))
	for i, m := range names {
		switch m {
		case "Version":
			rt := must(runtimeClient())
			calls[i] = func() error { _, err := rt.Version(ctx, "0.1.0"); return err }
		case "ContainerStatus":
			rt := must(runtimeClient())
			calls[i] = func() error { _, err := rt.ContainerStatus(ctx, *id, false); return err }
		case "PodSandboxStatus":
			rt := must(runtimeClient())
			calls[i] = func() error { _, err := rt.PodSandboxStatus(ctx, *podID, false); return err }
		case "ImageStatus":
			img := must(imageClient())
			calls[i] = func() error { _, err := img.ImageStatus(ctx, spec, false); return err }
		case "ListImages":
			img := must(imageClient())
			calls[i] = func() error { _, err := img.ListImages(ctx, nil); return err }
		case "ListContainers":
			rt := must(runtimeClient())
			calls[i] = func() error { _, err := rt.ListContainers(ctx, nil); return err }
		default:
			fmt.Fprintf(os.Stderr, "unknown -method %q\n", m)
			os.Exit(2)
		}
	}
	for i := 0; i < *warmup; i++ {
		for _, call := range calls {
			if err := call(); err != nil {
				fail(err)
			}
		}
	}
	us := make([][]float64, len(calls))
	for j := range us {
		us[j] = make([]float64, *n)
	}
	for i := 0; i < *n; i++ {
		for j, call := range calls {
			t0 := time.Now()
			if err := call(); err != nil {
				fail(err)
			}
			us[j][i] = float64(time.Since(t0).Nanoseconds()) / 1e3
		}
	}
	for j, m := range names {
		if *raw {
			fmt.Print(m, " samples")
			for _, v := range us[j] {
				fmt.Printf(" %.1f", v)
			}
			fmt.Println()
		}
		sort.Float64s(us[j])
		line := fmt.Sprintf("p50 %.1f p90 %.1f calls %d", us[j][*n/2], us[j][*n*9/10], *n)
		if len(names) > 1 {
			line = m + " " + line
		}
		fmt.Println(line)
	}
}

// must is v, or the end of the run when err is set.
func must[T any](v T, err error) T {
	if err != nil {
		fail(err)
	}
	return v
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cri-read-bench: %v\n", err)
	os.Exit(1)
}
