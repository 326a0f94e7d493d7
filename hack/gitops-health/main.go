// Command gitops-health tests the Argo CD health checks of deploy/gitops/health with the
// Lua VM Argo CD uses (gopher-lua) and generates the argocd-cm patch that installs them.
//
//	cd hack/gitops-health && go run . --check   # run every health_test.yaml case, check argocd-cm.yaml
//	cd hack/gitops-health && go run . --write   # regenerate argocd-cm.yaml
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

const (
	group      = "modelcommons.dev"
	apiVersion = group + "/v1alpha1"
	cmFile     = "argocd-cm.yaml"
	writeHint  = "run `cd hack/gitops-health && go run . --write`"
	// rootRel is where the health checks live, relative to the repository root.
	rootRel = "deploy/gitops/health"
)

// kinds are the CRDs of the operator; each needs a health check.
var kinds = []string{"Datanet", "FineTuneJob", "ModelDeployment", "ModelProposal", "RLHFRound"}

// requiredStatuses must each be expected by at least one test case of every kind.
var requiredStatuses = []string{"Healthy", "Progressing", "Degraded"}

// validStatuses are Argo CD's health status codes (gitops-engine pkg/health).
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

type healthStatus struct {
	Status  string `yaml:"status"`
	Message string `yaml:"message"`
}

// testFile is Argo CD's health_test.yaml format (resource_customizations/*/*/health_test.yaml).
type testFile struct {
	Tests []struct {
		HealthStatus healthStatus `yaml:"healthStatus"`
		InputPath    string       `yaml:"inputPath"`
	} `yaml:"tests"`
}

func main() {
	check := flag.Bool("check", false, "run the health_test.yaml cases and check that "+cmFile+" is up to date")
	write := flag.Bool("write", false, "regenerate the health.lua files from "+templateFile+" and "+cmFile+" from them")
	root := flag.String("root", "", "the health-check directory (default: "+rootRel+" of the repository around the working directory)")
	health := flag.String("health", "", "print the health Argo CD gives the object in this JSON or YAML file (e.g. kubectl get -o json): status, a tab, the message")
	flag.Parse()
	modes := 0
	for _, on := range []bool{*check, *write, *health != ""} {
		if on {
			modes++
		}
	}
	if modes != 1 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gitops-health (--check | --write | --health FILE) [--root DIR]")
		os.Exit(2)
	}
	dir := *root
	if dir == "" {
		var err error
		if dir, err = findRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "gitops-health:", err)
			os.Exit(2)
		}
	}
	var err error
	if *health != "" {
		err = printHealth(dir, *health, os.Stdout)
	} else if *write {
		err = writeConfigMap(dir, os.Stdout)
	} else {
		err = runCheck(dir, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(1)
	}
}

// printHealth runs the health.lua of the object's kind on the object in path.
func printHealth(root, path string, out io.Writer) error {
	obj, err := loadObject(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	group := strings.SplitN(apiVersion, "/", 2)[0]
	script, err := os.ReadFile(filepath.Join(root, group, kind, "health.lua"))
	if err != nil {
		return fmt.Errorf("no health check for %s %s: %w", apiVersion, kind, err)
	}
	hs, err := executeHealthLua(obj, string(script))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\t%s\n", hs.Status, hs.Message)
	return nil
}

// findRoot walks up from the working directory to the first directory holding rootRel,
// so that both `cd hack/gitops-health && go run .` and `go -C hack/gitops-health run .` work.
func findRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		candidate := filepath.Join(d, filepath.FromSlash(rootRel))
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no %s above %s; pass --root", rootRel, wd)
		}
	}
}

// runCheck runs every test case, prints one line per case and returns an error naming
// every failure.
func runCheck(root string, out io.Writer) error {
	var failures []string
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		failures = append(failures, msg)
		fmt.Fprintln(out, "FAIL", msg)
	}
	cases := 0
	for _, kind := range kinds {
		kindDir := filepath.Join(root, group, kind)
		script, err := os.ReadFile(filepath.Join(kindDir, "health.lua"))
		if err != nil {
			fail("%s: no health check: %v", kind, err)
			continue
		}
		raw, err := os.ReadFile(filepath.Join(kindDir, "health_test.yaml"))
		if err != nil {
			fail("%s: no tests: %v", kind, err)
			continue
		}
		var tf testFile
		if err := strictUnmarshal(raw, &tf); err != nil {
			fail("%s: health_test.yaml: %v", kind, err)
			continue
		}
		covered := map[string]bool{}
		used := map[string]bool{}
		for _, tc := range tf.Tests {
			cases++
			want := tc.HealthStatus
			covered[want.Status] = true
			used[filepath.Clean(tc.InputPath)] = true
			if !validStatuses[want.Status] {
				fail("%s %s: expected status %q is not an Argo CD health status", kind, tc.InputPath, want.Status)
				continue
			}
			obj, err := loadObject(filepath.Join(kindDir, filepath.FromSlash(tc.InputPath)))
			if err != nil {
				fail("%s %s: %v", kind, tc.InputPath, err)
				continue
			}
			if got, _ := obj["kind"].(string); got != kind {
				fail("%s %s: object kind is %q", kind, tc.InputPath, got)
				continue
			}
			if got, _ := obj["apiVersion"].(string); got != apiVersion {
				fail("%s %s: object apiVersion is %q, want %q", kind, tc.InputPath, got, apiVersion)
				continue
			}
			got, err := executeHealthLua(obj, string(script))
			if err != nil {
				fail("%s %s: health.lua: %v", kind, tc.InputPath, err)
				continue
			}
			if got != want {
				fail("%s %s\n    status:  want %q\n             got  %q\n    message: want %q\n             got  %q",
					kind, tc.InputPath, want.Status, got.Status, want.Message, got.Message)
				continue
			}
			fmt.Fprintf(out, "ok  %s %s %s\n", kind, tc.InputPath, got.Status)
		}
		for _, s := range requiredStatuses {
			if !covered[s] {
				fail("%s: health_test.yaml has no case expecting %s", kind, s)
			}
		}
		files, _ := filepath.Glob(filepath.Join(kindDir, "testdata", "*.yaml"))
		for _, f := range files {
			rel, _ := filepath.Rel(kindDir, f)
			if !used[rel] {
				fail("%s: %s is not used by health_test.yaml", kind, filepath.ToSlash(rel))
			}
		}
	}

	for _, kind := range kinds {
		want, err := renderScript(root, kind)
		have, rerr := os.ReadFile(filepath.Join(root, group, kind, "health.lua"))
		switch {
		case err != nil:
			fail("%s: %v", templateFile, err)
		case rerr != nil:
			fail("%s/health.lua: %v; %s", kind, rerr, writeHint)
		case !bytes.Equal(have, want):
			fail("%s/health.lua is not what %s renders (%s); %s", kind, templateFile, firstDifference(have, want), writeHint)
		}
	}

	want, err := renderConfigMap(root)
	if err != nil {
		fail("%s: %v", cmFile, err)
	} else if have, err := os.ReadFile(filepath.Join(root, cmFile)); err != nil {
		fail("%s: %v; %s", cmFile, err, writeHint)
	} else if !bytes.Equal(have, want) {
		fail("%s is out of date with the health.lua files (%s); %s", cmFile, firstDifference(have, want), writeHint)
	} else if err := checkConfigMapParses(root, have); err != nil {
		fail("%s: %v", cmFile, err)
	} else {
		fmt.Fprintf(out, "ok  %s up to date\n", cmFile)
	}

	if len(failures) > 0 {
		return fmt.Errorf("%d of the checks failed", len(failures))
	}
	fmt.Fprintf(out, "PASS %d cases, %d kinds\n", cases, len(kinds))
	return nil
}

func strictUnmarshal(raw []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// loadObject reads a YAML object the way Argo CD sees it: as unstructured JSON, integers
// as int64 and other numbers as float64 (what k8s.io/apimachinery's JSON decoding yields).
func loadObject(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	obj, ok := unstructuredNumbers(v).(map[string]any)
	if !ok {
		return nil, errors.New("not a YAML mapping")
	}
	return obj, nil
}

func unstructuredNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = unstructuredNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = unstructuredNumbers(e)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

// executeHealthLua mirrors Argo CD's util/lua VM for argocd-cm health scripts: a state
// without the standard libraries, then package, base and table opened (Argo CD also adds a
// reduced "os"; the scripts here do not use it), a one-second deadline, the object as the
// global obj, and the table the script returns read as {status, message}.
func executeHealthLua(obj map[string]any, script string) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	var hs healthStatus
	for field, dst := range map[string]*string{"status": &hs.Status, "message": &hs.Message} {
		switch v := ret.RawGetString(field).(type) {
		case lua.LString:
			*dst = string(v)
		case *lua.LNilType:
		default:
			return healthStatus{}, fmt.Errorf("hs.%s is a %s, not a string", field, v.Type())
		}
	}
	if !validStatuses[hs.Status] {
		// What Argo CD reports for a status it does not know.
		return healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// toLua converts an unstructured value the way Argo CD's decodeValue does: maps to tables
// with string keys, lists to 1-based arrays, numbers to Lua numbers.
func toLua(l *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case bool:
		return lua.LBool(t)
	case string:
		return lua.LString(t)
	case int64:
		return lua.LNumber(t)
	case float64:
		return lua.LNumber(t)
	case []any:
		arr := l.CreateTable(len(t), 0)
		for _, e := range t {
			arr.Append(toLua(l, e))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(t))
		for k, e := range t {
			tbl.RawSetH(lua.LString(k), toLua(l, e))
		}
		return tbl
	}
	return lua.LNil
}

// templateFile is the one source of the five health.lua files.
const templateFile = "health.lua.tmpl"

// renderScript renders kind's health.lua from the template: the same rules for every kind,
// and for ModelDeployment the Degraded phase of a rollout that lost its replicas.
func renderScript(root, kind string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(root, templateFile))
	if err != nil {
		return nil, err
	}
	t, err := template.New(templateFile).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, struct {
		Kind          string
		DegradedPhase bool
	}{kind, kind == "ModelDeployment"})
	return b.Bytes(), err
}

// writeScripts writes every kind's health.lua from the template.
func writeScripts(root string, out io.Writer) error {
	for _, kind := range kinds {
		data, err := renderScript(root, kind)
		if err != nil {
			return err
		}
		path := filepath.Join(root, group, kind, "health.lua")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(out, "wrote", path)
	}
	return nil
}

func configMapKey(kind string) string {
	return "resource.customizations.health." + group + "_" + kind
}

// renderConfigMap builds argocd-cm.yaml from the health.lua files.
func renderConfigMap(root string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`# GENERATED by hack/gitops-health from modelcommons.dev/*/health.lua. DO NOT EDIT.
# Regenerate with: cd hack/gitops-health && go run . --write
#
# Argo CD health checks for the modelcommons.dev kinds, as a patch of argocd-cm. Apply it:
#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/gitops/health/argocd-cm.yaml
# or list it under "patches:" of the kustomization that installs Argo CD.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: argocd
data:
`)
	sorted := append([]string(nil), kinds...)
	sort.Strings(sorted)
	for _, kind := range sorted {
		script, err := os.ReadFile(filepath.Join(root, group, kind, "health.lua"))
		if err != nil {
			return nil, err
		}
		text := strings.TrimRight(string(script), "\n")
		if strings.ContainsAny(text, "\t\r") || strings.HasPrefix(text, " ") {
			return nil, fmt.Errorf("%s/health.lua: tabs, carriage returns or a leading space do not survive a YAML block scalar", kind)
		}
		fmt.Fprintf(&b, "  %s: |\n", configMapKey(kind))
		for _, line := range strings.Split(text, "\n") {
			if line == "" {
				b.WriteString("\n")
			} else {
				b.WriteString("    " + line + "\n")
			}
		}
	}
	return b.Bytes(), nil
}

// checkConfigMapParses makes sure a YAML parser reads back each script unchanged.
func checkConfigMapParses(root string, raw []byte) error {
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return err
	}
	if len(cm.Data) != len(kinds) {
		return fmt.Errorf("%d data keys, want %d", len(cm.Data), len(kinds))
	}
	for _, kind := range kinds {
		script, err := os.ReadFile(filepath.Join(root, group, kind, "health.lua"))
		if err != nil {
			return err
		}
		if strings.TrimRight(cm.Data[configMapKey(kind)], "\n") != strings.TrimRight(string(script), "\n") {
			return fmt.Errorf("%s does not read back as %s/health.lua", configMapKey(kind), kind)
		}
	}
	return nil
}

func writeConfigMap(root string, out io.Writer) error {
	if err := writeScripts(root, out); err != nil {
		return err
	}
	data, err := renderConfigMap(root)
	if err != nil {
		return err
	}
	path := filepath.Join(root, cmFile)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(out, "wrote", path)
	return nil
}

func firstDifference(have, want []byte) string {
	h := strings.Split(string(have), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl || i >= len(h) || i >= len(w) {
			return fmt.Sprintf("line %d: have %q, want %q", i+1, hl, wl)
		}
	}
	return "files differ"
}
