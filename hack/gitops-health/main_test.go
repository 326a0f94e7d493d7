package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const repoRoot = "../../" + rootRel

func TestHealthChecks(t *testing.T) {
	var out strings.Builder
	if err := runCheck(repoRoot, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// A wrong expectation, a drifted argocd-cm.yaml and a missing kind must each fail.
func TestCheckFails(t *testing.T) {
	for name, breakIt := range map[string]func(dir string) error{
		"expectation": func(dir string) error {
			p := filepath.Join(dir, group, "FineTuneJob", "health_test.yaml")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, []byte(strings.Replace(string(b), "status: Healthy", "status: Degraded", 1)), 0o644)
		},
		"drift": func(dir string) error {
			p := filepath.Join(dir, group, "Datanet", "health.lua")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, append(b, "-- edited\n"...), 0o644)
		},
		"missing kind": func(dir string) error {
			return os.RemoveAll(filepath.Join(dir, group, "RLHFRound"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(repoRoot)); err != nil {
				t.Fatal(err)
			}
			if err := breakIt(dir); err != nil {
				t.Fatal(err)
			}
			if err := runCheck(dir, io.Discard); err == nil {
				t.Fatal("check passed")
			}
		})
	}
}

// Like Argo CD for argocd-cm scripts, the VM has base and table but not string or math.
func TestLibraries(t *testing.T) {
	obj := map[string]any{"list": []any{"a", "b"}, "n": int64(3)}
	hs, err := executeHealthLua(obj, `return {status = "Healthy", message = obj.list[1] .. obj.n .. table.concat(obj.list, ",")}`)
	if err != nil || hs.Message != "a3a,b" {
		t.Fatalf("got %+v, %v", hs, err)
	}
	for _, lib := range []string{"string", "math", "io", "os"} {
		hs, err := executeHealthLua(obj, `return {status = type(`+lib+`) == "nil" and "Healthy" or "Degraded"}`)
		if err != nil || hs.Status != "Healthy" {
			t.Errorf("%s is open: %+v, %v", lib, hs, err)
		}
	}
	if hs, _ := executeHealthLua(obj, `return {status = "Fine"}`); hs.Status != "Unknown" {
		t.Errorf("invalid status gave %+v", hs)
	}
}
