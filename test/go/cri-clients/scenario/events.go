package scenario

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// events is an open GetContainerEvents subscription, as kubelet's evented PLEG holds one.
type events struct {
	ch     chan *runtimeapi.ContainerEventResponse
	ended  chan error
	cancel context.CancelFunc
}

// subscribe opens the stream and returns once the runtime client reports it established.
func subscribe(ctx context.Context, rt Runtime) (*events, error) {
	ctx, cancel := context.WithCancel(ctx)
	// Buffered so the receiving goroutine never blocks while the scenario is busy elsewhere.
	e := &events{ch: make(chan *runtimeapi.ContainerEventResponse, 1024), ended: make(chan error, 1), cancel: cancel}
	open := make(chan struct{})
	go func() {
		e.ended <- rt.GetContainerEvents(ctx, e.ch, func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(open) })
	}()
	select {
	case <-open:
		return e, nil
	case err := <-e.ended:
		cancel()
		return nil, fmt.Errorf("stream ended before it was established: %v", err)
	}
}

// until collects the events of one container up to and including the first of type last.
func (e *events) until(id string, last runtimeapi.ContainerEventType, wait time.Duration) ([]*runtimeapi.ContainerEventResponse, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var got []*runtimeapi.ContainerEventResponse
	for {
		select {
		case ev := <-e.ch:
			if ev.ContainerId != id {
				continue
			}
			got = append(got, ev)
			if ev.ContainerEventType == last {
				return got, nil
			}
		case err := <-e.ended:
			return got, fmt.Errorf("event stream ended after %s: %v", typesOf(got), err)
		case <-timer.C:
			return got, fmt.Errorf("no %s within %s, got %s", last, wait, typesOf(got))
		}
	}
}

func (e *events) close() { e.cancel() }

func typesOf(evs []*runtimeapi.ContainerEventResponse) []string {
	out := []string{}
	for _, ev := range evs {
		out = append(out, ev.ContainerEventType.String())
	}
	return out
}
