// cri-stream-client calls every Stream* list RPC of the CRI (cri-api v0.37) on a unix socket
// and prints one JSON object: per RPC, the number of messages received and the items, each
// item as protojson. Optional filters: -pod (pod sandbox id) and -label key=value apply to the
// RPCs whose filter has them, as kubelet would pass them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type result struct {
	Messages int               `json:"messages"`
	Items    []json.RawMessage `json:"items"`
}

func recvAll[T any](stream interface{ Recv() (*T, error) }, items func(*T) []proto.Message) (result, error) {
	r := result{Items: []json.RawMessage{}}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return r, err
		}
		r.Messages++
		for _, it := range items(msg) {
			b, err := protojson.Marshal(it)
			if err != nil {
				return r, err
			}
			r.Items = append(r.Items, b)
		}
	}
}

func msgs[T proto.Message](xs []T) []proto.Message {
	out := make([]proto.Message, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func main() {
	socket := flag.String("socket", "", "CRI unix socket path")
	pod := flag.String("pod", "", "filter: pod sandbox id")
	label := flag.String("label", "", "filter: label key=value")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-stream-client -socket PATH [-pod ID] [-label k=v]")
		os.Exit(2)
	}
	labels := map[string]string{}
	if *label != "" {
		k, v, _ := strings.Cut(*label, "=")
		labels[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	img := runtime.NewImageServiceClient(conn)
	out := map[string]result{}

	s1, err := rt.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{Filter: &runtime.PodSandboxFilter{Id: *pod, LabelSelector: labels}})
	check("StreamPodSandboxes", err)
	out["podSandboxes"], err = recvAll(s1, func(m *runtime.StreamPodSandboxesResponse) []proto.Message { return msgs(m.PodSandboxes) })
	check("StreamPodSandboxes", err)

	s2, err := rt.StreamContainers(ctx, &runtime.StreamContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: *pod, LabelSelector: labels}})
	check("StreamContainers", err)
	out["containers"], err = recvAll(s2, func(m *runtime.StreamContainersResponse) []proto.Message { return msgs(m.Containers) })
	check("StreamContainers", err)

	s3, err := rt.StreamContainerStats(ctx, &runtime.StreamContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: *pod, LabelSelector: labels}})
	check("StreamContainerStats", err)
	out["containerStats"], err = recvAll(s3, func(m *runtime.StreamContainerStatsResponse) []proto.Message { return msgs(m.ContainerStats) })
	check("StreamContainerStats", err)

	s4, err := rt.StreamPodSandboxStats(ctx, &runtime.StreamPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{Id: *pod, LabelSelector: labels}})
	check("StreamPodSandboxStats", err)
	out["podSandboxStats"], err = recvAll(s4, func(m *runtime.StreamPodSandboxStatsResponse) []proto.Message { return msgs(m.PodSandboxStats) })
	check("StreamPodSandboxStats", err)

	s5, err := rt.StreamPodSandboxMetrics(ctx, &runtime.StreamPodSandboxMetricsRequest{})
	check("StreamPodSandboxMetrics", err)
	out["podSandboxMetrics"], err = recvAll(s5, func(m *runtime.StreamPodSandboxMetricsResponse) []proto.Message { return msgs(m.PodSandboxMetrics) })
	check("StreamPodSandboxMetrics", err)

	s6, err := img.StreamImages(ctx, &runtime.StreamImagesRequest{Filter: &runtime.ImageFilter{}})
	check("StreamImages", err)
	out["images"], err = recvAll(s6, func(m *runtime.StreamImagesResponse) []proto.Message { return msgs(m.Images) })
	check("StreamImages", err)

	b, err := json.Marshal(out)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(b))
}

func check(rpc string, err error) {
	if err != nil {
		fail(fmt.Errorf("%s: %w", rpc, err))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cri-stream-client:", err)
	os.Exit(1)
}
