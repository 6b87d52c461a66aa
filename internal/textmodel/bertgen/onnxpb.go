package bertgen

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The few ONNX protobuf messages a generated graph needs, encoded with
// protowire by their field numbers in onnx/onnx.proto (IR version 8). A
// generated Go package of the whole schema would be ~10k lines for seven
// messages; no maintained Go module exports them (onnx-go keeps its copy
// internal).

// ONNX TensorProto.DataType values.
const (
	tFloat = 1
	tInt64 = 7
)

type tensor struct {
	name  string
	dims  []int64
	dtype int32
	raw   []byte
}

func floatTensor(name string, dims []int64, v []float32) tensor {
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return tensor{name: name, dims: dims, dtype: tFloat, raw: raw}
}

func int64Tensor(name string, dims []int64, v []int64) tensor {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return tensor{name: name, dims: dims, dtype: tInt64, raw: raw}
}

func (t tensor) marshal() []byte {
	var b []byte
	for _, d := range t.dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t.dtype))
	b = appendString(b, 8, t.name)
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendBytes(b, t.raw)
	return b
}

// attr is a NodeProto attribute: one of i, f, ints or t is set.
type attr struct {
	name string
	i    *int64
	f    *float32
	ints []int64
	t    *tensor
}

func intAttr(name string, v int64) attr     { return attr{name: name, i: &v} }
func floatAttr(name string, v float32) attr { return attr{name: name, f: &v} }
func intsAttr(name string, v ...int64) attr { return attr{name: name, ints: v} }

func (a attr) marshal() []byte {
	b := appendString(nil, 1, a.name)
	var typ uint64
	switch {
	case a.f != nil:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(*a.f))
		typ = 1
	case a.i != nil:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(*a.i))
		typ = 2
	case a.t != nil:
		b = appendMsg(b, 5, a.t.marshal())
		typ = 4
	default:
		for _, v := range a.ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
		typ = 7
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType)
	return protowire.AppendVarint(b, typ)
}

type node struct {
	op      string
	name    string
	inputs  []string
	outputs []string
	attrs   []attr
}

func (n node) marshal() []byte {
	var b []byte
	for _, s := range n.inputs {
		b = appendString(b, 1, s)
	}
	for _, s := range n.outputs {
		b = appendString(b, 2, s)
	}
	b = appendString(b, 3, n.name)
	b = appendString(b, 4, n.op)
	for _, a := range n.attrs {
		b = appendMsg(b, 5, a.marshal())
	}
	return b
}

// valueInfo is a graph input or output: a tensor of elem type with dims
// that are sizes (> 0) or named symbols.
type valueInfo struct {
	name string
	elem int32
	dims []any // int64 or string
}

func (v valueInfo) marshal() []byte {
	var shape []byte
	for _, d := range v.dims {
		var dim []byte
		switch d := d.(type) {
		case int64:
			dim = protowire.AppendTag(dim, 1, protowire.VarintType)
			dim = protowire.AppendVarint(dim, uint64(d))
		case string:
			dim = appendString(dim, 2, d)
		}
		shape = appendMsg(shape, 1, dim)
	}
	tt := protowire.AppendTag(nil, 1, protowire.VarintType)
	tt = protowire.AppendVarint(tt, uint64(v.elem))
	tt = appendMsg(tt, 2, shape)
	typ := appendMsg(nil, 1, tt)
	b := appendString(nil, 1, v.name)
	return appendMsg(b, 2, typ)
}

type graph struct {
	name         string
	nodes        []node
	initializers []tensor
	inputs       []valueInfo
	outputs      []valueInfo
}

// model encodes a ModelProto of g at IR version 8 and the given default
// domain opset.
func model(g graph, opset int64) []byte {
	var gb []byte
	for _, n := range g.nodes {
		gb = appendMsg(gb, 1, n.marshal())
	}
	gb = appendString(gb, 2, g.name)
	for _, t := range g.initializers {
		gb = appendMsg(gb, 5, t.marshal())
	}
	for _, v := range g.inputs {
		gb = appendMsg(gb, 11, v.marshal())
	}
	for _, v := range g.outputs {
		gb = appendMsg(gb, 12, v.marshal())
	}
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 8)
	b = appendString(b, 2, "ember-bertgen")
	b = appendMsg(b, 7, gb)
	op := appendString(nil, 1, "")
	op = protowire.AppendTag(op, 2, protowire.VarintType)
	op = protowire.AppendVarint(op, uint64(opset))
	return appendMsg(b, 8, op)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMsg(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
