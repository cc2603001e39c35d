// A stand-in for github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc,
// which the Go module proxy here refuses (403) while flannel v0.28.10
// requires it for its tencent-vpc backend. It holds only the names that
// backend calls, written here (no code of the SDK), and every call fails:
// weft's tests never run flanneld's tencent-vpc backend. Used through a
// `replace` in ../go.mod.
module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc

go 1.21
