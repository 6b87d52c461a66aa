//go:build cgo

package models

// ONNXBuilt reports whether this binary has the built-in ONNX runtime
// (onnxruntime_go needs cgo).
const ONNXBuilt = true
