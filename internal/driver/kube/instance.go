package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ember-run/ember/internal/driver"
)

// Container waiting reasons that no wait fixes: the start fails with
// them at once rather than at its timeout.
var (
	imageReasons  = []string{"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
	configReasons = []string{"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)

// tailLines is how many last log lines a failed start carries, and the
// most a crashed Pod's log is read for when its stream never opened.
const tailLines = 20

// Instance is one Pod.
type Instance struct {
	d        *Driver
	function string
	id       string
	pod      string
	secret   string // "" when the Pod has none
	port     int    // the port the instance listens on
	hostPort int    // held in d.ports (host network), 0 if none
	adopted  bool   // taken over (Adopt): its log is followed from now on
	onPhase  func(driver.Phase)
	logs     *driver.LogTail
	out      *driver.TailWriter

	ctx    context.Context // the watch's and log stream's; cancelled by finish or Driver.Close
	cancel context.CancelFunc

	up     chan struct{} // closed once the container runs and the Pod has an IP
	done   chan struct{} // closed by run once the instance is over
	logsOn chan struct{} // closed when the log stream has ended; nil until it opens (run's)

	stopped atomic.Bool // Ember deleted the Pod (Stop, or a failed start)

	mu        sync.Mutex // guards the following
	phases    []driver.Phase
	addr      string
	scheduled bool
	waiting   waiting // what the Pod waits for while not running
	err       error   // why it ended; set before done closes
}

// waiting says what a Pod that is not running yet waits for.
type waiting struct {
	reason string
	err    error // ErrUnschedulable, or nil
}

func (d *Driver) newInstance(fn, id, pod string, port, hostPort int, output io.Writer, onPhase func(driver.Phase)) *Instance {
	ctx, cancel := context.WithCancel(d.ctx)
	logs := driver.NewLogTail(200)
	return &Instance{d: d, function: fn, id: id, pod: pod, port: port, hostPort: hostPort, onPhase: onPhase,
		logs: logs, out: &driver.TailWriter{Tail: logs, W: output}, ctx: ctx, cancel: cancel,
		up: make(chan struct{}), done: make(chan struct{}), waiting: waiting{reason: "pod pending"}}
}

// Addr is podIP:port (host network: the node's IP and Ember's port).
func (in *Instance) Addr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

func (in *Instance) Done() <-chan struct{} { return in.done }

// Tail returns the last n lines of the Pod's log.
func (in *Instance) Tail(n int) []string { return in.logs.Last(n) }

func (in *Instance) Err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

func (in *Instance) Phases() []driver.Phase {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]driver.Phase(nil), in.phases...)
}

// Pod is the Pod's name.
func (in *Instance) Pod() string { return in.pod }

func (in *Instance) String() string { return in.function + "/" + in.id + " (pod " + in.pod + ")" }

func (in *Instance) phase(name string) {
	p := driver.Phase{Name: name, At: time.Now()}
	in.mu.Lock()
	in.phases = append(in.phases, p)
	in.mu.Unlock()
	if in.onPhase != nil {
		in.onPhase(p)
	}
}

func (in *Instance) waitingFor() waiting {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.waiting
}

func (in *Instance) setWaiting(w waiting) {
	in.mu.Lock()
	in.waiting = w
	in.mu.Unlock()
}

// run owns the instance from its Pod's creation (or adoption): it watches
// the Pod, reports its phases, opens its log once the container runs,
// and ends the instance when the Pod fails or is deleted, whoever did it.
func (in *Instance) run(first *corev1.Pod) {
	end := in.observe(first)
	rv := first.ResourceVersion
	for end == nil {
		rv, end = in.watch(rv)
	}
	in.finish(end)
}

// errStopped ends an instance Ember stopped.
var errStopped = fmt.Errorf("%w: stopped", driver.ErrExited)

// watch follows the Pod from resource version rv until it ends (end not
// nil) or the watch closes (the API server ends watches after a while),
// returning the version to go on from.
func (in *Instance) watch(rv string) (next string, end error) {
	pods := in.d.cs.CoreV1().Pods(in.d.opts.Namespace)
	w, err := pods.Watch(in.ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", in.pod).String(), ResourceVersion: rv})
	if err != nil {
		if in.ctx.Err() != nil {
			return rv, in.abandoned()
		}
		in.d.logger.Warn("cannot watch pod; retrying", "pod", in.pod, "err", err)
		return in.resync(true)
	}
	defer w.Stop()
	opened := time.Now()
	if rv == "" {
		// No version to start from: read the Pod once, so a change made
		// before the watch opened is not missed.
		if _, end := in.resync(false); end != nil {
			return rv, end
		}
	}
	for {
		select {
		case <-in.ctx.Done():
			return rv, in.abandoned()
		case ev, ok := <-w.ResultChan():
			if !ok {
				// A watch the server closed at once is not reopened at
				// once: that would spin.
				return in.resync(time.Since(opened) < time.Second)
			}
			switch ev.Type {
			case watch.Deleted:
				if p, ok := ev.Object.(*corev1.Pod); ok && p.Name == in.pod {
					return rv, in.deleted()
				}
			case watch.Added, watch.Modified:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok || p.Name != in.pod {
					continue
				}
				rv = p.ResourceVersion
				if end := in.observe(p); end != nil {
					return rv, end
				}
			case watch.Error:
				// Most often 410 Gone: the version is too old. Read the
				// Pod again and watch from its current version.
				return in.resync(time.Since(opened) < time.Second)
			}
		}
	}
}

// resync reads the Pod (after RewatchDelay when pause is set, and
// again after each failed read) and returns where to watch from.
func (in *Instance) resync(pause bool) (string, error) {
	for {
		if pause {
			t := time.NewTimer(in.d.opts.RewatchDelay)
			select {
			case <-in.ctx.Done():
				t.Stop()
				return "", in.abandoned()
			case <-t.C:
			}
		}
		p, err := in.d.cs.CoreV1().Pods(in.d.opts.Namespace).Get(in.ctx, in.pod, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "", in.deleted()
		case in.ctx.Err() != nil:
			return "", in.abandoned()
		case err != nil:
			in.d.logger.Warn("cannot read pod; retrying", "pod", in.pod, "err", err)
			pause = true
			continue
		}
		return p.ResourceVersion, in.observe(p)
	}
}

func (in *Instance) deleted() error {
	if in.stopped.Load() {
		return errStopped
	}
	return fmt.Errorf("%w: %w: pod %s was deleted by someone other than Ember", driver.ErrExited, ErrDeleted, in.pod)
}

// abandoned ends an instance whose driver closed: the Pod is left for the
// next leader to adopt.
func (in *Instance) abandoned() error {
	return fmt.Errorf("%w: the driver closed; pod %s left running", driver.ErrExited, in.pod)
}

// observe takes in one state of the Pod: it reports phases and returns
// why the instance is over, or nil while it is not.
func (in *Instance) observe(p *corev1.Pod) error {
	if p.DeletionTimestamp != nil {
		if in.stopped.Load() {
			return nil // Ember's own stop: done closes when the Pod is gone
		}
		return fmt.Errorf("%w: %w: pod %s is being deleted by someone other than Ember", driver.ErrExited, ErrDeleted, in.pod)
	}
	in.mu.Lock()
	first := !in.scheduled && (p.Spec.NodeName != "" || condition(p, corev1.PodScheduled) == corev1.ConditionTrue)
	in.scheduled = in.scheduled || first
	in.mu.Unlock()
	if first {
		in.phase(PhaseScheduled)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			in.setWaiting(waiting{reason: "unschedulable: " + c.Message, err: ErrUnschedulable})
		}
	}
	var cs *corev1.ContainerStatus
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == ContainerName {
			cs = &p.Status.ContainerStatuses[i]
		}
	}
	if cs != nil {
		switch st := cs.State; {
		case st.Terminated != nil:
			return terminated(st.Terminated)
		case st.Waiting != nil && contains(imageReasons, st.Waiting.Reason):
			return fmt.Errorf("%w: %w: image %s: %s: %s", driver.ErrExited, ErrImage, cs.Image, st.Waiting.Reason, st.Waiting.Message)
		case st.Waiting != nil && contains(configReasons, st.Waiting.Reason) && !cacheLag(st.Waiting.Reason, st.Waiting.Message):
			return fmt.Errorf("%w: container cannot start: %s: %s", driver.ErrExited, st.Waiting.Reason, st.Waiting.Message)
		case st.Waiting != nil && st.Waiting.Message != "":
			in.setWaiting(waiting{reason: "container " + st.Waiting.Reason + ": " + st.Waiting.Message})
		case st.Waiting != nil:
			in.setWaiting(waiting{reason: "container " + st.Waiting.Reason})
		case st.Running != nil && p.Status.PodIP != "":
			in.running(p.Status.PodIP)
		case st.Running != nil:
			in.setWaiting(waiting{reason: "container running, pod has no IP yet"})
		}
	}
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return fmt.Errorf("%w: pod %s: %s %s", driver.ErrExited, strings.ToLower(string(p.Status.Phase)), p.Status.Reason, p.Status.Message)
	}
	return nil
}

// running records the first sight of the running container with an IP.
func (in *Instance) running(ip string) {
	select {
	case <-in.up:
		return
	default:
	}
	in.mu.Lock()
	in.addr = net.JoinHostPort(ip, strconv.Itoa(in.port))
	in.mu.Unlock()
	in.phase(PhaseRunning)
	in.startLogs()
	close(in.up)
}

// cacheLag reports whether a CreateContainerConfigError is the kubelet's
// own cache not yet holding the Pod's Secret or ConfigMap: its watch-based
// manager waits only a second for a new object's watch to sync and then
// fails the sync with "failed to sync secret cache: timed out waiting for
// the condition". A slow API server causes it with a Secret created just
// before the Pod, and the kubelet's next sync (about 10 s later) starts
// the container, so the start waits for that instead of failing. A
// kubelet that never syncs (it cannot reach the API server) says the same
// forever: that start fails at its start_timeout.
func cacheLag(reason, msg string) bool {
	return reason == "CreateContainerConfigError" &&
		(strings.HasPrefix(msg, "failed to sync secret cache:") || strings.HasPrefix(msg, "failed to sync configmap cache:"))
}

func terminated(t *corev1.ContainerStateTerminated) error {
	if t.Reason == "OOMKilled" {
		return fmt.Errorf("%w: OOM killed: the container exceeded its memory limit (status %d)", driver.ErrExited, t.ExitCode)
	}
	return fmt.Errorf("%w: container exited with status %d (%s)", driver.ErrExited, t.ExitCode, t.Reason)
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// startLogs follows the container's log into the instance's output (run's
// goroutine only). An adopted Pod's log is followed from now: its earlier
// lines went to the server that started it.
func (in *Instance) startLogs() {
	if in.logsOn != nil {
		return
	}
	in.logsOn = make(chan struct{})
	opts := &corev1.PodLogOptions{Container: ContainerName, Follow: true}
	if in.adopted {
		zero := int64(0)
		opts.TailLines = &zero
	}
	go func() {
		defer close(in.logsOn)
		rc, err := in.d.cs.CoreV1().Pods(in.d.opts.Namespace).GetLogs(in.pod, opts).Stream(in.ctx)
		if err != nil {
			if in.ctx.Err() == nil {
				in.out.Write([]byte("ember: cannot read pod log: " + err.Error() + "\n"))
			}
			return
		}
		defer rc.Close()
		io.Copy(in.out, rc)
	}()
}

// finish ends the instance: the last lines of a crash are kept, the Pod
// (unless it is being deleted already) and its Secret are deleted, the
// host port is released, and done closes.
func (in *Instance) finish(end error) {
	abandoned := in.d.ctx.Err() != nil
	if !abandoned && !errors.Is(end, errStopped) && !errors.Is(end, ErrDeleted) {
		in.readTail()
	}
	if in.logsOn != nil {
		select {
		case <-in.logsOn: // the container ended, so its log stream does
		case <-time.After(2 * time.Second):
		}
	}
	in.cancel()
	in.out.Flush()
	if !abandoned {
		if !errors.Is(end, errStopped) && !errors.Is(end, ErrDeleted) {
			in.stopped.Store(true)
			if err := in.d.deletePod(in.pod, 0); err != nil {
				in.d.logger.Warn("cannot delete an ended pod", "pod", in.pod, "err", err)
			}
		}
		in.d.deleteSecret(in.secret)
	}
	in.d.ports.Release(in.hostPort)
	in.mu.Lock()
	in.err = end
	in.mu.Unlock()
	close(in.done)
}

// readTail reads the last lines of a Pod whose log stream never opened
// (it crashed before it was seen running), bounded in lines, bytes and
// time.
func (in *Instance) readTail() {
	if in.logsOn != nil {
		return
	}
	n, limit := int64(tailLines), int64(64<<10)
	ctx, cancel := context.WithTimeout(in.ctx, 5*time.Second)
	defer cancel()
	rc, err := in.d.cs.CoreV1().Pods(in.d.opts.Namespace).GetLogs(in.pod,
		&corev1.PodLogOptions{Container: ContainerName, TailLines: &n, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return // no container ever ran (an image that cannot be pulled)
	}
	defer rc.Close()
	io.Copy(in.out, rc)
}

// Stop deletes the Pod with a grace period of ctx's remaining time (or
// Options.StopGrace) and waits until it is gone; when ctx ends first the
// Pod is deleted at once. The Secret goes with it.
func (in *Instance) Stop(ctx context.Context) error {
	select {
	case <-in.done:
		return nil
	default:
	}
	in.stopped.Store(true)
	grace := in.d.opts.StopGrace
	if dl, ok := ctx.Deadline(); ok {
		grace = max(time.Until(dl)-time.Second, 0) // a second left to see the Pod go
	}
	if err := in.d.deletePod(in.pod, int64(grace/time.Second)); err != nil {
		in.d.logger.Warn("cannot delete pod", "pod", in.pod, "err", err)
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
	}
	in.kill()
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pod %s: still not gone after a forced delete: %w", in.pod, ctx.Err())
	}
	return ctx.Err()
}

// Redirect sends the Pod's log lines from now on to w: a pooled worker
// handed to a function logs as that function's instance.
func (in *Instance) Redirect(w io.Writer) { in.out.Redirect(w) }

// Relabel makes the Pod l's: a pooled worker specialised for a function
// carries that function's labels from then on, so that a new leader
// adopts it as the function's instance rather than deleting it as a
// leftover of the pool (Fission's pool manager relabels the same way).
func (in *Instance) Relabel(ctx context.Context, l driver.Labels) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels": podLabels(l), "annotations": podAnnotations(l)}})
	if err != nil {
		return err
	}
	if _, err := in.d.cs.CoreV1().Pods(in.d.opts.Namespace).Patch(ctx, in.pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("relabel pod %s: %w", in.pod, err)
	}
	return nil
}

// kill deletes the Pod at once; run sees it go and ends the instance.
func (in *Instance) kill() {
	in.stopped.Store(true)
	if err := in.d.deletePod(in.pod, 0); err != nil {
		in.d.logger.Warn("cannot delete pod", "pod", in.pod, "err", err)
	}
}

var (
	_ driver.Instance  = (*Instance)(nil)
	_ driver.LogTailer = (*Instance)(nil)
)
