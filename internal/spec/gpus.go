package spec

// GPUCount is how many GPUs one instance of f occupies (0 for CPU
// functions): the one reading of resources.gpu.count that pricing,
// metering and usage share.
func (f *Function) GPUCount() int {
	if f.Resources != nil && f.Resources.GPU != nil {
		return f.Resources.GPU.Count
	}
	return 0
}
