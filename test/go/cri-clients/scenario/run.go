package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// run is one pass of the scenario: what it created so far, for the next steps and the cleanup.
type run struct {
	o       Options
	rt      Runtime
	img     Images
	imageID string
	podID   string
	ctrID   string // the container, until removed
	created string // the container, for its events
	events  *events
}

type step struct {
	name string
	fn   func(context.Context) (string, error)
}

// Run holds the conversation, printing "ok STEP: detail" to out for each step that passed, and
// returns the first failure, after removing what it had created.
func Run(ctx context.Context, o Options, rt Runtime, img Images, out io.Writer) (err error) {
	r := &run{o: o, rt: rt, img: img}
	defer func() {
		if err != nil {
			r.cleanup(ctx)
		}
	}()
	steps := []step{
		{"Version", r.version}, {"Status", r.status},
		{"PullImage", r.pullImage}, {"ListImages", r.listImages}, {"ImageStatus", r.imageStatus},
		{"RunPodSandbox", r.runPodSandbox}, {"PodSandboxStatus", r.podSandboxStatus}, {"ListPodSandbox", r.listPodSandbox},
		{"GetContainerEvents", r.subscribe},
		{"CreateContainer", r.createContainer}, {"StartContainer", r.startContainer},
		{"ContainerStatus", r.containerStatus}, {"ListContainers", r.listContainers}, {"ExecSync", r.execSync},
		{"StopContainer", r.stopContainer}, {"RemoveContainer", r.removeContainer}, {"ContainerEvents", r.containerEvents},
		{"StopPodSandbox", r.stopPodSandbox}, {"RemovePodSandbox", r.removePodSandbox},
		{"RemoveImage", r.removeImage}, {"ImageFsInfo", r.imageFsInfo},
	}
	for _, s := range steps {
		detail, err := s.fn(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(out, "ok %s: %s\n", s.name, detail)
	}
	return nil
}

// cleanup removes, best effort, what a failed run left.
func (r *run) cleanup(ctx context.Context) {
	if r.events != nil {
		r.events.close()
	}
	if r.ctrID != "" {
		_ = r.rt.RemoveContainer(ctx, r.ctrID)
	}
	if r.podID != "" {
		_ = r.rt.StopPodSandbox(ctx, r.podID)
		_ = r.rt.RemovePodSandbox(ctx, r.podID)
	}
	if r.imageID != "" {
		_ = r.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: r.imageID})
	}
}

func (r *run) version(ctx context.Context) (string, error) {
	v, err := r.rt.Version(ctx, "0.1.0") // kubelet's own API version
	if err != nil {
		return "", err
	}
	if v.RuntimeApiVersion != "v1" {
		return "", fmt.Errorf("runtime API version %q, want v1", v.RuntimeApiVersion)
	}
	return fmt.Sprintf("%s %s, CRI %s", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion), nil
}

func (r *run) status(ctx context.Context) (string, error) {
	s, err := r.rt.Status(ctx, false)
	if err != nil {
		return "", err
	}
	var conds []string
	ready := map[string]bool{}
	for _, c := range s.GetStatus().GetConditions() {
		ready[c.Type] = c.Status
		conds = append(conds, fmt.Sprintf("%s=%v", c.Type, c.Status))
	}
	if !ready[runtimeapi.RuntimeReady] || !ready[runtimeapi.NetworkReady] {
		return "", fmt.Errorf("runtime not ready: %v", conds)
	}
	return strings.Join(conds, " "), nil
}

func (r *run) pullImage(ctx context.Context) (string, error) {
	ref, err := r.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: r.o.Image}, nil, nil)
	if err != nil {
		return "", err
	}
	if ref == "" {
		return "", errors.New("empty image reference")
	}
	r.imageID = ref
	return ref, nil
}

func (r *run) listImages(ctx context.Context) (string, error) {
	images, err := r.img.ListImages(ctx, nil)
	if err != nil {
		return "", err
	}
	for _, i := range images {
		for _, tag := range i.RepoTags {
			if tag == r.o.Image {
				if i.Id != r.imageID {
					return "", fmt.Errorf("%s listed as %s, but PullImage returned %s", tag, i.Id, r.imageID)
				}
				return fmt.Sprintf("%d images, %s tagged %s", len(images), i.Id, tag), nil
			}
		}
	}
	return "", fmt.Errorf("%s not among %d images", r.o.Image, len(images))
}

func (r *run) imageStatus(ctx context.Context) (string, error) {
	s, err := r.img.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: r.o.Image}, false)
	if err != nil {
		return "", err
	}
	if s.Image == nil || s.Image.Id != r.imageID {
		return "", fmt.Errorf("got %v, want image %s", s.Image, r.imageID)
	}
	return fmt.Sprintf("%s, tags %v", s.Image.Id, s.Image.RepoTags), nil
}

func (r *run) runPodSandbox(ctx context.Context) (string, error) {
	id, err := r.rt.RunPodSandbox(ctx, r.o.podConfig(), "")
	if err != nil {
		return "", err
	}
	r.podID = id
	return id, nil
}

func (r *run) podSandboxStatus(ctx context.Context) (string, error) {
	s, err := r.rt.PodSandboxStatus(ctx, r.podID, false)
	if err != nil {
		return "", err
	}
	st := s.GetStatus()
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" || st.GetMetadata().GetUid() != r.o.uid() {
		return "", fmt.Errorf("want a ready pod %s with an IP, got %v", r.o.uid(), st)
	}
	return fmt.Sprintf("%s, IP %s", st.State, st.Network.Ip), nil
}

func (r *run) listPodSandbox(ctx context.Context) (string, error) {
	pods, err := r.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": r.o.uid()},
	})
	if err != nil {
		return "", err
	}
	if len(pods) != 1 || pods[0].Id != r.podID || pods[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", fmt.Errorf("want the ready pod %s alone, got %v", r.podID, pods)
	}
	return fmt.Sprintf("%s %s", pods[0].Id, pods[0].State), nil
}

func (r *run) subscribe(ctx context.Context) (string, error) {
	e, err := subscribe(ctx, r.rt)
	if err != nil {
		return "", err
	}
	r.events = e
	return "subscribed", nil
}

func (r *run) createContainer(ctx context.Context) (string, error) {
	id, err := r.rt.CreateContainer(ctx, r.podID, r.o.containerConfig(), r.o.podConfig())
	if err != nil {
		return "", err
	}
	r.ctrID, r.created = id, id
	return id, nil
}

func (r *run) startContainer(ctx context.Context) (string, error) {
	return "started", r.rt.StartContainer(ctx, r.ctrID)
}

func (r *run) containerStatus(ctx context.Context) (string, error) {
	s, err := r.rt.ContainerStatus(ctx, r.ctrID, false)
	if err != nil {
		return "", err
	}
	st := s.GetStatus()
	want := filepath.Join(r.o.LogDir, "main/0.log")
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || st.GetLogPath() != want {
		return "", fmt.Errorf("want running with log %s, got %v", want, st)
	}
	return fmt.Sprintf("%s, log %s", st.State, st.LogPath), nil
}

func (r *run) listContainers(ctx context.Context) (string, error) {
	cs, err := r.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: r.podID})
	if err != nil {
		return "", err
	}
	if len(cs) != 1 || cs[0].Id != r.ctrID || cs[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return "", fmt.Errorf("want the running container %s alone, got %v", r.ctrID, cs)
	}
	return fmt.Sprintf("%s %s", cs[0].Id, cs[0].State), nil
}

func (r *run) execSync(ctx context.Context) (string, error) {
	stdout, stderr, err := r.rt.ExecSync(ctx, r.ctrID, []string{"sh", "-c", "echo out; echo err >&2"}, 10*time.Second)
	if err != nil || string(stdout) != "out\n" || string(stderr) != "err\n" {
		return "", fmt.Errorf("got stdout %q stderr %q err %v, want \"out\\n\" \"err\\n\" and exit 0", stdout, stderr, err)
	}
	// kubelet learns a probe's exit code from the error's ExitStatus (k8s.io/utils/exec.ExitError).
	_, _, err = r.rt.ExecSync(ctx, r.ctrID, []string{"sh", "-c", "exit 7"}, 10*time.Second)
	var exit interface{ ExitStatus() int }
	if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
		return "", fmt.Errorf("`exit 7` gave %v, want exit status 7", err)
	}
	return fmt.Sprintf("stdout %q stderr %q exit 0; exit %d", stdout, stderr, exit.ExitStatus()), nil
}

func (r *run) stopContainer(ctx context.Context) (string, error) {
	if err := r.rt.StopContainer(ctx, r.ctrID, 30); err != nil {
		return "", err
	}
	s, err := r.rt.ContainerStatus(ctx, r.ctrID, false)
	if err != nil {
		return "", err
	}
	st := s.GetStatus()
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 0 {
		return "", fmt.Errorf("want exited with code 0 (its TERM trap), got %v", st)
	}
	return fmt.Sprintf("%s, exit code %d", st.State, st.ExitCode), nil
}

func (r *run) removeContainer(ctx context.Context) (string, error) {
	if err := r.rt.RemoveContainer(ctx, r.ctrID); err != nil {
		return "", err
	}
	id := r.ctrID
	r.ctrID = ""
	if _, err := r.rt.ContainerStatus(ctx, id, false); status.Code(err) != codes.NotFound {
		return "", fmt.Errorf("ContainerStatus after removal gave %v, want NotFound", err)
	}
	return "removed, status NotFound", nil
}

func (r *run) containerEvents(ctx context.Context) (string, error) {
	defer r.events.close()
	evs, err := r.events.until(r.created, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, time.Minute)
	if err != nil {
		return "", err
	}
	got := strings.Join(typesOf(evs), " ")
	want := "CONTAINER_CREATED_EVENT CONTAINER_STARTED_EVENT CONTAINER_STOPPED_EVENT CONTAINER_DELETED_EVENT"
	if got != want {
		return "", fmt.Errorf("got events %s, want %s", got, want)
	}
	// kubelet's evented PLEG finds the pod by the sandbox status the event carries.
	for _, ev := range evs {
		if ev.GetPodSandboxStatus().GetMetadata().GetUid() != r.o.uid() {
			return "", fmt.Errorf("%s carries pod %v, want uid %s", ev.ContainerEventType, ev.PodSandboxStatus, r.o.uid())
		}
	}
	return got, nil
}

func (r *run) stopPodSandbox(ctx context.Context) (string, error) {
	if err := r.rt.StopPodSandbox(ctx, r.podID); err != nil {
		return "", err
	}
	s, err := r.rt.PodSandboxStatus(ctx, r.podID, false)
	if err != nil {
		return "", err
	}
	if s.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		return "", fmt.Errorf("want NOTREADY, got %v", s.GetStatus())
	}
	return s.Status.State.String(), nil
}

func (r *run) removePodSandbox(ctx context.Context) (string, error) {
	if err := r.rt.RemovePodSandbox(ctx, r.podID); err != nil {
		return "", err
	}
	id := r.podID
	r.podID = ""
	if _, err := r.rt.PodSandboxStatus(ctx, id, false); status.Code(err) != codes.NotFound {
		return "", fmt.Errorf("PodSandboxStatus after removal gave %v, want NotFound", err)
	}
	return "removed, status NotFound", nil
}

func (r *run) removeImage(ctx context.Context) (string, error) {
	if err := r.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: r.imageID}); err != nil {
		return "", err
	}
	r.imageID = ""
	s, err := r.img.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: r.o.Image}, false)
	if err != nil || s.Image != nil {
		return "", fmt.Errorf("ImageStatus after removal gave %v %v, want no image", s.GetImage(), err)
	}
	return "removed, status empty", nil
}

func (r *run) imageFsInfo(ctx context.Context) (string, error) {
	fs, err := r.img.ImageFsInfo(ctx)
	if err != nil {
		return "", err
	}
	if len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].GetFsId().GetMountpoint() == "" {
		return "", fmt.Errorf("no image filesystem in %v", fs)
	}
	f := fs.ImageFilesystems[0]
	return fmt.Sprintf("%s, %d bytes used", f.FsId.Mountpoint, f.GetUsedBytes().GetValue()), nil
}
