package ocr

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ioNames reads the graph's input and output names straight from the ONNX
// protobuf. Asking ONNX Runtime instead (GetInputOutputInfo) builds a whole
// session, which would double the model-load part of a cold start.
//
// Wire layout used: ModelProto.graph = 7; GraphProto.input = 11, .output = 12,
// .initializer = 5 (inputs that are weights, skipped); ValueInfoProto.name = 1;
// TensorProto.name = 8.
func ioNames(model []byte) (inputs, outputs []string, err error) {
	graph, err := pbField(model, 7)
	if err != nil {
		return nil, nil, fmt.Errorf("onnx model: %w", err)
	}
	weights := map[string]bool{}
	err = pbEach(graph, func(num int, val []byte) error {
		switch num {
		case 5:
			if n, err := pbField(val, 8); err == nil {
				weights[string(n)] = true
			}
		case 11, 12:
			n, err := pbField(val, 1)
			if err != nil {
				return err
			}
			if num == 11 {
				inputs = append(inputs, string(n))
			} else {
				outputs = append(outputs, string(n))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("onnx graph: %w", err)
	}
	var in []string
	for _, n := range inputs {
		if !weights[n] {
			in = append(in, n)
		}
	}
	if len(in) == 0 || len(outputs) == 0 {
		return nil, nil, errors.New("onnx graph: no inputs or outputs")
	}
	return in, outputs, nil
}

var errNoField = errors.New("field not found")

// pbField returns the first length-delimited field num of msg.
func pbField(msg []byte, num int) ([]byte, error) {
	var found []byte
	err := pbEach(msg, func(n int, val []byte) error {
		if n == num && found == nil {
			found = val
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %d", errNoField, num)
	}
	return found, nil
}

// pbEach calls fn for every length-delimited field of msg and skips the rest.
func pbEach(msg []byte, fn func(num int, val []byte) error) error {
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return errors.New("bad protobuf key")
		}
		msg = msg[n:]
		num, typ := int(key>>3), key&7
		switch typ {
		case 0: // varint
			_, n := binary.Uvarint(msg)
			if n <= 0 {
				return errors.New("bad protobuf varint")
			}
			msg = msg[n:]
		case 1: // fixed64
			if len(msg) < 8 {
				return errors.New("short fixed64")
			}
			msg = msg[8:]
		case 5: // fixed32
			if len(msg) < 4 {
				return errors.New("short fixed32")
			}
			msg = msg[4:]
		case 2:
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return errors.New("bad protobuf length")
			}
			val := msg[n : n+int(l)]
			msg = msg[n+int(l):]
			if err := fn(num, val); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported protobuf wire type %d", typ)
		}
	}
	return nil
}
