// Package ocr is the PaddleOCR (PP-OCRv4) text recognition pipeline on ONNX
// Runtime: detection with DB post-processing into boxes, rectifying crops,
// optional orientation classification, and recognition with CTC greedy
// decoding against the model's character dictionary.
package ocr
