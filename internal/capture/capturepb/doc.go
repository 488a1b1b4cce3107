// Package capturepb holds the capture service's protocol buffers: capture.proto and the Go code protoc
// generates from it (protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.0).
package capturepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative capture.proto
