package ocr

import "syscall"

const mapPopulate = syscall.MAP_POPULATE
