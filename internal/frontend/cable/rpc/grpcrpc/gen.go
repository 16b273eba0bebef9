package grpcrpc

// The Go code in anycablepb is generated from anycable.proto and committed,
// so building and CI need no protoc. Regenerating it takes protoc 3.21.12
// (Debian's protobuf-compiler), protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc v1.6.2:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

//go:generate protoc --go_out=anycablepb --go_opt=paths=source_relative --go-grpc_out=anycablepb --go-grpc_opt=paths=source_relative anycable.proto
