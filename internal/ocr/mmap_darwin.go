package ocr

const mapPopulate = 0
