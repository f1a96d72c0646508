// nri-test-plugin connects to an NRI socket as plugin IDX-NAME and, for each container whose
// pod or container annotations ask for it:
//
//	berth.test/nri-adjust: "1"  adds env NRI_ADJUSTED=1, annotation berth.test/nri-adjusted,
//	                            a read-only bind mount of -mount-source at /nri-mount, an
//	                            RLIMIT_NOFILE of 1234, a pids limit of 77, and removes env DROP_ME
//	berth.test/nri-refuse: "1"  refuses CreateContainer with an error
//	berth.test/nri-update: "1"  changes the CPU shares of an UpdateContainerResources to 333
//	berth.test/nri-validate-reject: "1"
//	                            rejects, as a validator, adjustments that touch the env
//
// Every event it gets is printed to stdout as one JSON line {"event","pod","container"}, and
// "ready" is printed once Synchronize is done, "closed" when the runtime closed the connection
// (the plugin then exits, 0 if it had been synchronized).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	mountSource string
	mu          sync.Mutex
	synced      bool
	closeOnce   sync.Once
}

// closed reports, once, that the runtime's connection is gone.
func (p *plugin) closed() {
	p.closeOnce.Do(func() { p.print("closed", "", "") })
}

func (p *plugin) print(event, pod, ctr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(map[string]string{"event": event, "pod": pod, "container": ctr})
	fmt.Println(string(b))
}

func asks(pod *api.PodSandbox, ctr *api.Container, key string) bool {
	return pod.GetAnnotations()[key] == "1" || ctr.GetAnnotations()[key] == "1"
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.print("Synchronize", pod.GetId(), "")
	}
	for _, c := range ctrs {
		p.print("Synchronize", c.GetPodSandboxId(), c.GetId())
	}
	p.mu.Lock()
	p.synced = true
	p.mu.Unlock()
	p.print("ready", "", "")
	return nil, nil
}

func (p *plugin) Shutdown(_ context.Context) {
	p.print("Shutdown", "", "")
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.print("RunPodSandbox", pod.GetId(), "")
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.print("StopPodSandbox", pod.GetId(), "")
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.print("RemovePodSandbox", pod.GetId(), "")
	return nil
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.print("CreateContainer", pod.GetId(), ctr.GetId())
	if asks(pod, ctr, "berth.test/nri-refuse") {
		return nil, nil, errors.New("refused by nri-test-plugin")
	}
	if !asks(pod, ctr, "berth.test/nri-adjust") {
		return nil, nil, nil
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NRI_ADJUSTED", "1")
	adj.RemoveEnv("DROP_ME")
	adj.AddAnnotation("berth.test/nri-adjusted", "yes")
	adj.AddMount(&api.Mount{Destination: "/nri-mount", Type: "bind", Source: p.mountSource, Options: []string{"rbind", "ro"}})
	adj.AddRlimit("RLIMIT_NOFILE", 1234, 1234)
	adj.SetLinuxPidLimits(77)
	return adj, nil, nil
}

func (p *plugin) ValidateContainerAdjustment(_ context.Context, req *api.ValidateContainerAdjustmentRequest) error {
	ctr := req.GetContainer()
	p.print("ValidateContainerAdjustment", req.GetPod().GetId(), ctr.GetId())
	if asks(req.GetPod(), ctr, "berth.test/nri-validate-reject") && len(req.GetAdjust().GetEnv()) > 0 {
		return errors.New("env adjustments are not allowed here")
	}
	return nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.print("PostCreateContainer", pod.GetId(), ctr.GetId())
	return nil
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.print("StartContainer", pod.GetId(), ctr.GetId())
	return nil
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.print("PostStartContainer", pod.GetId(), ctr.GetId())
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.print("UpdateContainer", pod.GetId(), ctr.GetId())
	if !asks(pod, ctr, "berth.test/nri-update") {
		return nil, nil
	}
	u := &api.ContainerUpdate{}
	u.SetContainerId(ctr.GetId())
	u.SetLinuxCPUShares(333)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.print("PostUpdateContainer", pod.GetId(), ctr.GetId())
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.print("StopContainer", pod.GetId(), ctr.GetId())
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.print("RemoveContainer", pod.GetId(), ctr.GetId())
	return nil
}

func main() {
	socket := flag.String("socket", api.DefaultSocketPath, "NRI socket")
	name := flag.String("name", "berth-test", "plugin name")
	idx := flag.String("idx", "50", "plugin index")
	mountSource := flag.String("mount-source", "/", "host directory the adjusted containers get at /nri-mount")
	flag.Parse()
	p := &plugin{mountSource: *mountSource}
	s, err := stub.New(p, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx),
		stub.WithOnClose(p.closed))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Run ends when the runtime closes the connection (its error then says so): after a
	// completed Synchronize that is the expected end, and the plugin exits 0.
	err = s.Run(context.Background())
	p.closed()
	p.mu.Lock()
	synced := p.synced
	p.mu.Unlock()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if !synced {
		os.Exit(1)
	}
}
