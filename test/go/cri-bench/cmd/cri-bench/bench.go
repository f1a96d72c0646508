package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type bench struct {
	o      options
	rt     internalapi.RuntimeService
	img    internalapi.ImageManagerService
	res    Result
	prefix string
	n      atomic.Int64
	hold   func(label string) error
	mu     sync.Mutex
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[cri-bench] "+format+"\n", a...)
}

// timed runs fn and, when it succeeds, adds its duration to the row.
func (b *bench) timed(row string, fn func() error) error {
	t0 := time.Now()
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", row, err)
	}
	ms := float64(time.Since(t0).Nanoseconds()) / 1e6
	b.mu.Lock()
	b.res.Samples[row] = append(b.res.Samples[row], ms)
	b.mu.Unlock()
	return nil
}

// turn offers the caller a turn between blocks of a timed loop: with -turns N, a loop of n
// steps holds "turn" before step i when i starts one of its N blocks (never before the first).
// The side-by-side run then lets the other runtimes run their block of the same loop, so every
// runtime's samples of a row come from the same minutes of a shared machine.
func (b *bench) turn(i, n int) error {
	if b.o.turns <= 1 || i == 0 {
		return nil
	}
	per := max(1, (n+b.o.turns-1)/b.o.turns)
	if i%per != 0 {
		return nil
	}
	return b.hold("turn")
}

type pod struct {
	id     string
	config *runtimeapi.PodSandboxConfig
}

// podConfig is what kubelet sends for a plain pod; every name carries this run's prefix.
func (b *bench) podConfig() *runtimeapi.PodSandboxConfig {
	name := fmt.Sprintf("%s-%d", b.prefix, b.n.Add(1))
	uid := name + "-uid"
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "berth-bench", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(b.o.logDir, name),
		Labels: map[string]string{
			"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "berth-bench", "io.kubernetes.pod.uid": uid,
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: b.o.cgroupParent},
	}
}

// containerConfig is a busybox that exits 0 on SIGTERM, so StopContainer measures a stop, not
// its grace period.
func (b *bench) containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: b.o.image},
		Command:  []string{"sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"},
		LogPath:  name + ".log",
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func (b *bench) runPod(ctx context.Context, row string) (pod, error) {
	p := pod{config: b.podConfig()}
	do := func() (err error) { p.id, err = b.rt.RunPodSandbox(ctx, p.config, ""); return }
	if row == "" {
		return p, do()
	}
	return p, b.timed(row, do)
}

func (b *bench) removePod(ctx context.Context, p pod, timedRows bool) error {
	stop := func() error { return b.rt.StopPodSandbox(ctx, p.id) }
	remove := func() error { return b.rt.RemovePodSandbox(ctx, p.id) }
	if !timedRows {
		if err := stop(); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		return remove()
	}
	if err := b.timed("StopPodSandbox", stop); err != nil {
		return err
	}
	return b.timed("RemovePodSandbox", remove)
}

// startContainer creates and starts a busybox in the pod, untimed.
func (b *bench) startContainer(ctx context.Context, p pod, name string) (string, error) {
	id, err := b.rt.CreateContainer(ctx, p.id, b.containerConfig(name), p.config)
	if err != nil {
		return "", fmt.Errorf("CreateContainer: %w", err)
	}
	if err := b.rt.StartContainer(ctx, id); err != nil {
		return "", fmt.Errorf("StartContainer: %w", err)
	}
	return id, nil
}

func (b *bench) run(ctx context.Context) error {
	phases := []struct {
		name string
		fn   func(context.Context) error
	}{
		// the memory holds (churn, concurrent) come before the 1,000-container list, whose
		// heap growth a daemon may keep for minutes and which would then be in every figure
		{"warm-up", b.warmUp}, {"lifecycle", b.lifecycle}, {"reads", b.reads},
		{"churn", b.churnPhase}, {"concurrent", b.concurrentPhase}, {"list", b.list}, {"pull", b.pulls},
	}
	for _, ph := range phases {
		t0 := time.Now()
		logf("%s", ph.name)
		if err := ph.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		logf("%s done in %.1f s", ph.name, time.Since(t0).Seconds())
	}
	return nil
}

// warmUp pulls the busybox and runs one pod (a containerd pulls its pause image here), then
// holds for the idle memory figure.
func (b *bench) warmUp(ctx context.Context) error {
	if _, err := b.rt.Version(ctx, "0.1.0"); err != nil {
		return fmt.Errorf("Version: %w", err)
	}
	if _, err := b.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: b.o.image}, nil, nil); err != nil {
		return fmt.Errorf("PullImage %s: %w", b.o.image, err)
	}
	p, err := b.runPod(ctx, "")
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	if _, err := b.startContainer(ctx, p, "warm"); err != nil {
		return err
	}
	if err := b.removePod(ctx, p, false); err != nil {
		return err
	}
	return b.hold("idle")
}

// lifecycle times each pod and container call of a pod's life, one pod after the other.
func (b *bench) lifecycle(ctx context.Context) error {
	if err := b.hold("quiet lifecycle"); err != nil {
		return err
	}
	for i := 0; i < b.o.samples; i++ {
		if err := b.turn(i, b.o.samples); err != nil {
			return err
		}
		p, err := b.runPod(ctx, "RunPodSandbox")
		if err != nil {
			return err
		}
		var id string
		if err := b.timed("CreateContainer", func() (err error) {
			id, err = b.rt.CreateContainer(ctx, p.id, b.containerConfig("c"), p.config)
			return
		}); err != nil {
			return err
		}
		if err := b.timed("StartContainer", func() error { return b.rt.StartContainer(ctx, id) }); err != nil {
			return err
		}
		for j := 0; j < 2; j++ {
			if err := b.timed("ExecSync", func() error {
				_, _, err := b.rt.ExecSync(ctx, id, []string{"true"}, 30*time.Second)
				return err
			}); err != nil {
				return err
			}
		}
		if err := b.timed("StopContainer", func() error { return b.rt.StopContainer(ctx, id, 10) }); err != nil {
			return err
		}
		if err := b.timed("RemoveContainer", func() error { return b.rt.RemoveContainer(ctx, id) }); err != nil {
			return err
		}
		if err := b.removePod(ctx, p, true); err != nil {
			return err
		}
	}
	return nil
}

// reads times the status and image reads kubelet polls, against one running pod.
func (b *bench) reads(ctx context.Context) error {
	p, err := b.runPod(ctx, "")
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	id, err := b.startContainer(ctx, p, "c")
	if err != nil {
		return err
	}
	if err := b.hold("quiet reads"); err != nil {
		return err
	}
	spec := &runtimeapi.ImageSpec{Image: b.o.image}
	calls := []struct {
		row string
		fn  func() error
	}{
		{"ContainerStatus", func() error { _, err := b.rt.ContainerStatus(ctx, id, false); return err }},
		{"PodSandboxStatus", func() error { _, err := b.rt.PodSandboxStatus(ctx, p.id, false); return err }},
		{"ImageStatus", func() error { _, err := b.img.ImageStatus(ctx, spec, false); return err }},
		{"ListImages", func() error { _, err := b.img.ListImages(ctx, nil); return err }},
		{"Version", func() error { _, err := b.rt.Version(ctx, "0.1.0"); return err }},
	}
	// interleaved, so that a burst of load on the machine spreads over every row alike
	round := func(suffix string, timed bool) error {
		for _, c := range calls {
			var err error
			if timed {
				err = b.timed(c.row+suffix, c.fn)
			} else {
				err = c.fn()
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	// First as the lifecycle phase left the daemon. Then again after more rounds untimed: a
	// kubelet polls these reads all the time, and a daemon whose code a JIT optimizes (berthd's
	// V8 after some thousands of calls of a function) answers them faster than at first.
	for i := 0; i < b.o.statusSamples; i++ {
		if err := b.turn(i, b.o.statusSamples); err != nil {
			return err
		}
		if err := round("", true); err != nil {
			return err
		}
	}
	if b.o.warmReads > 0 {
		for i := 0; i < b.o.warmReads; i++ {
			if err := round("", false); err != nil {
				return err
			}
		}
		for i := 0; i < b.o.statusSamples; i++ {
			if err := b.turn(i, b.o.statusSamples); err != nil {
				return err
			}
			if err := round(" warm", true); err != nil {
				return err
			}
		}
	}
	return b.removePod(ctx, p, false)
}

// list creates (without starting) containers across a few pods and times ListContainers.
func (b *bench) list(ctx context.Context) error {
	// Held before the containers exist: a runtime holding 1,000 of them (and, for berthd, their
	// rootfs mounts: every mountinfo read on the host gets longer) while another runtime takes
	// its turn would slow that one down.
	if err := b.hold("quiet list"); err != nil {
		return err
	}
	pods := make([]pod, b.o.listPods)
	for i := range pods {
		p, err := b.runPod(ctx, "")
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		pods[i] = p
	}
	err := parallel(b.o.listContainers, 4, func(i int) error {
		p := pods[i%len(pods)]
		_, err := b.rt.CreateContainer(ctx, p.id, b.containerConfig(fmt.Sprintf("c%d", i)), p.config)
		return err
	})
	if err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	if err := b.hold("settle"); err != nil {
		return err
	}
	for i := 0; i < b.o.listSamples; i++ {
		if err := b.timed("ListContainers", func() error {
			cs, err := b.rt.ListContainers(ctx, nil)
			b.res.Listed = len(cs)
			return err
		}); err != nil {
			return err
		}
	}
	return parallel(len(pods), 2, func(i int) error { return b.removePod(ctx, pods[i], false) })
}

// churnPhase runs and removes pods, some at once, then holds for the after-churn memory.
func (b *bench) churnPhase(ctx context.Context) error {
	err := parallel(b.o.churn, b.o.churnConcurrency, func(int) error {
		p, err := b.runPod(ctx, "")
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		return b.removePod(ctx, p, false)
	})
	if err != nil {
		return err
	}
	return b.hold("after-churn")
}

// concurrentPhase starts N pods with a container each all at once (wall time), as many times
// as asked, holds for the memory with N pods running after the last, then removes them.
func (b *bench) concurrentPhase(ctx context.Context) error {
	for _, c := range b.o.concurrent {
		for r := 0; r < c.times; r++ {
			hold := ""
			if r == c.times-1 {
				hold = fmt.Sprintf("pods-%d", c.n)
			}
			if err := b.burst(ctx, c.n, hold); err != nil {
				return err
			}
		}
	}
	return nil
}

// burst times n pods started at once, holds (unless hold is ""), and removes them.
func (b *bench) burst(ctx context.Context, n int, hold string) error {
	pods := make([]pod, n)
	if err := b.hold("quiet burst"); err != nil {
		return err
	}
	err := b.timed(fmt.Sprintf("%d pods started at once", n), func() error {
		return parallel(n, n, func(i int) error {
			p, err := b.runPod(ctx, "")
			if err != nil {
				return fmt.Errorf("RunPodSandbox: %w", err)
			}
			pods[i] = p
			_, err = b.startContainer(ctx, p, "c")
			return err
		})
	})
	if err == nil && hold != "" {
		err = b.hold(hold)
	}
	// removed whether or not all started (cleanup() catches the ones never recorded)
	rmErr := parallel(n, 8, func(i int) error {
		if pods[i].id == "" {
			return nil
		}
		return b.removePod(ctx, pods[i], false)
	})
	if err != nil {
		return err
	}
	return rmErr
}

// pulls times PullImage of a small and a big image, removing the image after each.
func (b *bench) pulls(ctx context.Context) error {
	for _, x := range []struct {
		row, ref string
		n        int
	}{{"PullImage small", b.o.smallImage, b.o.pullsSmall}, {"PullImage big", b.o.bigImage, b.o.pullsBig}} {
		spec := &runtimeapi.ImageSpec{Image: x.ref}
		if err := b.hold("quiet pull"); err != nil {
			return err
		}
		for i := 0; i < x.n; i++ {
			if err := b.turn(i, x.n); err != nil {
				return err
			}
			if err := b.timed(x.row, func() error { _, err := b.img.PullImage(ctx, spec, nil, nil); return err }); err != nil {
				return err
			}
			if err := b.img.RemoveImage(ctx, spec); err != nil {
				return fmt.Errorf("RemoveImage %s: %w", x.ref, err)
			}
		}
	}
	return nil
}

// cleanup stops and removes every pod whose name carries this run's prefix.
func (b *bench) cleanup(ctx context.Context) error {
	pods, err := b.rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return fmt.Errorf("cleanup: ListPodSandbox: %w", err)
	}
	var first error
	for _, p := range pods {
		if p.Metadata == nil || len(p.Metadata.Name) < len(b.prefix) || p.Metadata.Name[:len(b.prefix)] != b.prefix {
			continue
		}
		if err := b.removePod(ctx, pod{id: p.Id}, false); err != nil && first == nil {
			first = fmt.Errorf("cleanup of pod %s: %w", p.Id, err)
		}
	}
	return first
}

// parallel runs fn(0..n-1) with at most `width` in flight and returns the first error.
func parallel(n, width int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, width)
	for w := 0; w < min(width, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
