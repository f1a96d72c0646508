package scenario

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options are the command-line flags both clients take.
type Options struct {
	Socket    string // path of the CRI unix socket
	Image     string // image reference to pull and run (busybox)
	Pod       string // pod name
	Namespace string
	LogDir    string        // the pod's log directory (kubelet's /var/log/pods/NS_NAME_UID)
	Timeout   time.Duration // kubelet's --runtime-request-timeout
}

// ParseFlags reads the options from os.Args and exits with usage on a missing one.
func ParseFlags() Options {
	var o Options
	fs := flag.NewFlagSet(filepath.Base(os.Args[0]), flag.ExitOnError)
	fs.StringVar(&o.Socket, "socket", "", "CRI socket path (required)")
	fs.StringVar(&o.Image, "image", "", "busybox image reference (required)")
	fs.StringVar(&o.Pod, "pod", "go-cri-client", "pod name")
	fs.StringVar(&o.Namespace, "namespace", "berth-test", "pod namespace")
	fs.StringVar(&o.LogDir, "log-dir", "", "pod log directory (required)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "per-request timeout, as kubelet's --runtime-request-timeout")
	_ = fs.Parse(os.Args[1:])
	if o.Socket == "" || o.Image == "" || o.LogDir == "" {
		fmt.Fprintln(os.Stderr, "-socket, -image and -log-dir are required")
		fs.Usage()
		os.Exit(2)
	}
	return o
}

func (o Options) uid() string { return o.Namespace + "-" + o.Pod + "-uid" }

// podConfig is what kubelet sends for a pod without host namespaces or special settings.
func (o Options) podConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: o.Pod, Namespace: o.Namespace, Uid: o.uid()},
		Hostname:     o.Pod,
		LogDirectory: o.LogDir,
		Labels: map[string]string{
			"io.kubernetes.pod.name":      o.Pod,
			"io.kubernetes.pod.namespace": o.Namespace,
			"io.kubernetes.pod.uid":       o.uid(),
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// containerConfig runs busybox that says hi and waits, exiting 0 on SIGTERM.
func (o Options) containerConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
		Image:    &runtimeapi.ImageSpec{Image: o.Image},
		Command:  []string{"sh", "-c", "trap 'exit 0' TERM; echo hi; sleep 3600 & wait"},
		LogPath:  "main/0.log",
		Labels:   map[string]string{"io.kubernetes.container.name": "main"},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}
