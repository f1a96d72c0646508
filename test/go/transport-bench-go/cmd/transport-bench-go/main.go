// transport-bench-go times unary CRI calls through grpc-go, as kubelet's CRI client makes them:
// -concurrency goroutines share one connection (one HTTP/2 channel, as kubelet's), each calling
// until -n calls are done in all. It prints one JSON line: the p50 and p99 in microseconds and
// the calls per second over the timed part.
//
//	transport-bench-go -socket /tmp/x/grpc.sock -method ContainerStatus|ListContainers -n 2000 -concurrency 50
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type result struct {
	Calls       int     `json:"calls"`
	P50Us       float64 `json:"p50Us"`
	P99Us       float64 `json:"p99Us"`
	CallsPerSec float64 `json:"callsPerSec"`
}

func main() {
	socket := flag.String("socket", "", "the grpc server's unix socket")
	method := flag.String("method", "ContainerStatus", "ContainerStatus or ListContainers")
	n := flag.Int("n", 2000, "timed calls in all")
	warmup := flag.Int("warmup", 200, "untimed calls first")
	concurrency := flag.Int("concurrency", 1, "concurrent callers on the one connection")
	flag.Parse()
	if *socket == "" || *concurrency < 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: transport-bench-go -socket PATH [-method M] [-n N] [-concurrency C]")
		os.Exit(2)
	}
	conn, err := grpc.NewClient("passthrough:///localhost",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
		}),
		// kubelet's limits (16 MiB each way), so a 4 MiB list passes as it would there.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
	)
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	var call func() error
	switch *method {
	case "ContainerStatus":
		call = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "bench"})
			return err
		}
	case "ListContainers":
		call = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}
	default:
		fail(fmt.Errorf("unknown -method %q", *method))
	}
	for i := 0; i < *warmup; i++ {
		if err := call(); err != nil {
			fail(err)
		}
	}
	lat := make([]float64, *n)
	var next int64 = -1
	var wg sync.WaitGroup
	var firstErr atomic.Value
	t0 := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(*n) {
					return
				}
				s := time.Now()
				if err := call(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = float64(time.Since(s).Nanoseconds()) / 1e3
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if e := firstErr.Load(); e != nil {
		fail(e.(error))
	}
	sort.Float64s(lat)
	out, _ := json.Marshal(result{
		Calls:       *n,
		P50Us:       pct(lat, 0.50),
		P99Us:       pct(lat, 0.99),
		CallsPerSec: float64(*n) / elapsed.Seconds(),
	})
	fmt.Println(string(out))
}

// pct is the nearest-rank percentile of sorted xs.
func pct(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	if i < 0 {
		i = 0
	}
	return math.Round(xs[i]*10) / 10
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "transport-bench-go:", err)
	os.Exit(1)
}
