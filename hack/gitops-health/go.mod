module modelcommons.dev/hack/gitops-health

go 1.23

require (
	github.com/yuin/gopher-lua v1.1.1
	gopkg.in/yaml.v3 v3.0.1
)
