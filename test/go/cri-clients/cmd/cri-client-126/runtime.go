package main

import (
	"context"
	"fmt"
	"io"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeService calls the generated stubs with the per-call deadlines kubelet 1.26's
// remoteRuntimeService used (its --runtime-request-timeout, doubled for RunPodSandbox).
type runtimeService struct {
	c       runtimeapi.RuntimeServiceClient
	timeout time.Duration
}

func (r *runtimeService) ctx(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout+extra)
}

func (r *runtimeService) Version(ctx context.Context, apiVersion string) (*runtimeapi.VersionResponse, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	return r.c.Version(ctx, &runtimeapi.VersionRequest{Version: apiVersion})
}

func (r *runtimeService) Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	return r.c.Status(ctx, &runtimeapi.StatusRequest{Verbose: verbose})
}

func (r *runtimeService) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	ctx, cancel := r.ctx(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: config, RuntimeHandler: handler})
	if err != nil {
		return "", err
	}
	return resp.PodSandboxId, nil
}

func (r *runtimeService) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	return r.c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: verbose})
}

func (r *runtimeService) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	resp, err := r.c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	return resp.Items, nil
}

func (r *runtimeService) StopPodSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	_, err := r.c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	return err
}

func (r *runtimeService) RemovePodSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	_, err := r.c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

func (r *runtimeService) CreateContainer(ctx context.Context, podID string, config *runtimeapi.ContainerConfig, sandbox *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	resp, err := r.c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: config, SandboxConfig: sandbox})
	if err != nil {
		return "", err
	}
	return resp.ContainerId, nil
}

func (r *runtimeService) StartContainer(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	_, err := r.c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

func (r *runtimeService) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	return r.c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: verbose})
}

func (r *runtimeService) ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	resp, err := r.c.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	return resp.Containers, nil
}

// exitError is how kubelet 1.26 reported a non-zero ExecSync exit (utilexec.CodeExitError).
type exitError struct {
	error
	code int
}

func (e exitError) ExitStatus() int { return e.code }

func (r *runtimeService) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error) {
	ctx, cancel := r.ctx(ctx, timeout)
	defer cancel()
	resp, err := r.c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: int64(timeout.Seconds())})
	if err != nil {
		return nil, nil, err
	}
	if resp.ExitCode != 0 {
		err = exitError{fmt.Errorf("command %q exited with %d: %s", cmd, resp.ExitCode, resp.Stderr), int(resp.ExitCode)}
	}
	return resp.Stdout, resp.Stderr, err
}

func (r *runtimeService) StopContainer(ctx context.Context, id string, timeout int64) error {
	ctx, cancel := r.ctx(ctx, time.Duration(timeout)*time.Second)
	defer cancel()
	_, err := r.c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout})
	return err
}

func (r *runtimeService) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx, 0)
	defer cancel()
	_, err := r.c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	return err
}

// GetContainerEvents streams without a deadline, as kubelet's evented PLEG does.
func (r *runtimeService) GetContainerEvents(ctx context.Context, ch chan *runtimeapi.ContainerEventResponse, established func(runtimeapi.RuntimeService_GetContainerEventsClient)) error {
	stream, err := r.c.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		return err
	}
	if established != nil {
		established(stream)
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return err
		}
		if err != nil {
			return err
		}
		ch <- resp
	}
}
