// cri-bench measures one CRI runtime through k8s.io/cri-client, the client kubelet uses, so
// that berthd and containerd are timed by the same code over the same gRPC stack. It prints
// progress to stderr and, on stdout, "HOLD <label>" lines (it then waits for a line on stdin)
// and one final "RESULT <json>" line. The labels: a memory point ("idle", "after-churn",
// "pods-N"); "quiet <phase>" at the start of a timed phase (the caller waits for a quiet
// machine, and may let other runtimes run first); "settle" between a phase's set-up and its
// timing (the caller waits for a quiet machine); and with -turns, "turn" between blocks of a
// timed loop (the caller may let other runtimes run).
//
//	cri-bench -socket /run/x.sock -image REF -small-image REF -big-image REF -log-dir DIR
//	          [-cgroup-parent /bench-x] [-samples 20] [-status-samples 200] [-list 1000]
//	          [-concurrent 20x3,100] [-churn 40] [-pulls-small 5] [-pulls-big 2] [-hold [-turns N]]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	remote "k8s.io/cri-client/pkg"
)

type options struct {
	socket, image, smallImage, bigImage, logDir, cgroupParent                string
	samples, statusSamples, warmReads, listContainers, listPods, listSamples int
	churn, churnConcurrency, pullsSmall, pullsBig, turns                     int
	concurrent                                                               []burst
	hold                                                                     bool
	timeout                                                                  time.Duration
}

func parseFlags() options {
	var o options
	var concurrent string
	fs := flag.NewFlagSet("cri-bench", flag.ExitOnError)
	fs.StringVar(&o.socket, "socket", "", "CRI unix socket path (required)")
	fs.StringVar(&o.image, "image", "", "busybox image the containers run (required)")
	fs.StringVar(&o.smallImage, "small-image", "", "small image for the PullImage row (required)")
	fs.StringVar(&o.bigImage, "big-image", "", "large image for the PullImage row (required)")
	fs.StringVar(&o.logDir, "log-dir", "", "directory for the pods' log directories (required)")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", "", "the pods' cgroup parent (cgroupfs path)")
	fs.IntVar(&o.samples, "samples", 20, "pod lifecycles timed one after the other")
	fs.IntVar(&o.statusSamples, "status-samples", 200, "samples of each status and image read")
	fs.IntVar(&o.warmReads, "warm-reads", 0, "untimed rounds of the reads before they are timed again (rows \"<read> warm\"); 0: once only")
	fs.IntVar(&o.listContainers, "list", 1000, "containers created for the ListContainers row")
	fs.IntVar(&o.listPods, "list-pods", 4, "pods holding them")
	fs.IntVar(&o.listSamples, "list-samples", 20, "ListContainers samples")
	fs.IntVar(&o.churn, "churn", 40, "pods run and removed before the after-churn memory hold")
	fs.IntVar(&o.churnConcurrency, "churn-concurrency", 8, "churn pods in flight")
	fs.IntVar(&o.pullsSmall, "pulls-small", 5, "pulls of the small image")
	fs.IntVar(&o.pullsBig, "pulls-big", 2, "pulls of the big image")
	fs.StringVar(&concurrent, "concurrent", "20,100", `pod counts started at once, comma-separated; "20x3": three bursts of 20 (the row's samples)`)
	fs.IntVar(&o.turns, "turns", 0, `with -hold: split the lifecycles, the reads and the pulls into N blocks each, with "HOLD turn" between them`)
	fs.BoolVar(&o.hold, "hold", false, `print "HOLD label" and wait for a stdin line at the memory points and before each timed burst ("HOLD quiet")`)
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "per-request timeout")
	_ = fs.Parse(os.Args[1:])
	if o.socket == "" || o.image == "" || o.smallImage == "" || o.bigImage == "" || o.logDir == "" {
		fmt.Fprintln(os.Stderr, "-socket, -image, -small-image, -big-image and -log-dir are required")
		fs.Usage()
		os.Exit(2)
	}
	for _, s := range strings.Split(concurrent, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		count, times, repeated := strings.Cut(s, "x")
		n, err := strconv.Atoi(count)
		reps := 1
		if repeated {
			reps, err = strconv.Atoi(times)
		}
		if err != nil || n <= 0 || reps <= 0 {
			fmt.Fprintf(os.Stderr, "-concurrent: %q is not a positive count (with an optional xN)\n", s)
			os.Exit(2)
		}
		o.concurrent = append(o.concurrent, burst{n, reps})
	}
	return o
}

// burst is one -concurrent entry: n pods started at once, times over.
type burst struct{ n, times int }

// Result is the RESULT line: per row, every sample in milliseconds.
type Result struct {
	Samples map[string][]float64 `json:"samples"`
	// Listed is how many containers the ListContainers row returned.
	Listed int `json:"listed"`
}

func main() {
	o := parseFlags()
	ctx := context.Background()
	endpoint := "unix://" + o.socket // kubelet's --container-runtime-endpoint form
	rt, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(o.timeout).Build(ctx)
	if err != nil {
		fail(fmt.Errorf("connecting the runtime service: %w", err))
	}
	defer rt.Close(ctx)
	img, err := remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(o.timeout).Build(ctx)
	if err != nil {
		fail(fmt.Errorf("connecting the image service: %w", err))
	}
	defer img.Close(ctx)
	stdin := bufio.NewReader(os.Stdin)
	b := &bench{o: o, rt: rt, img: img, res: Result{Samples: map[string][]float64{}}, prefix: fmt.Sprintf("cb%d", os.Getpid())}
	b.hold = func(label string) error {
		if !o.hold {
			return nil
		}
		fmt.Printf("HOLD %s\n", label)
		_, err := stdin.ReadString('\n')
		return err
	}
	runErr := b.run(ctx)
	// Whatever happened, remove every pod this run made before leaving.
	if err := b.cleanup(ctx); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		fail(runErr)
	}
	out, _ := json.Marshal(b.res)
	fmt.Printf("RESULT %s\n", out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cri-bench: %v\n", err)
	os.Exit(1)
}
