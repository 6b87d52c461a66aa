// Package worker is the process an onnx instance runs (`ember worker onnx`):
// an HTTP server that loads a model on ONNX Runtime and serves predictions,
// reports its cold-start phases, and can wait pre-initialised in a pool until
// it is told which model to load.
package worker
