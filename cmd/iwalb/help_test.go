package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestHelp: every command has help that names its synopsis, its flags and
// the exit codes, from `iwalb help COMMAND` and from `iwalb COMMAND -h`.
func TestHelp(t *testing.T) {
	for _, d := range commandDocs {
		var out, errOut strings.Builder
		if code := run([]string{"help", d.name}, &out, &errOut); code != 0 || errOut.Len() > 0 {
			t.Errorf("help %s: exit %d, stderr %q", d.name, code, errOut.String())
		}
		want := []string{"usage: " + d.synopsis, "Exit status:", "2  the command line is wrong"}
		if strings.Contains(d.synopsis, "-config") {
			want = append(want, "-config FILE")
		}
		if strings.Contains(d.synopsis, "-json") {
			want = append(want, "-json")
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("help %s lacks %q:\n%s", d.name, w, out.String())
			}
		}
	}
	var errOut strings.Builder
	if code := run([]string{"doctor", "-h"}, &strings.Builder{}, &errOut); code != 0 || !strings.Contains(errOut.String(), "usage: iwalb doctor [-json] -config FILE") {
		t.Errorf("doctor -h: exit %d\n%s", code, errOut.String())
	}
	if code := run([]string{"help", "nope"}, &strings.Builder{}, &strings.Builder{}); code != 2 {
		t.Errorf("help nope: exit %d, want 2", code)
	}
}

// TestManPage: `iwalb help -man` is a man page groff reads without a
// warning, with every command and the exit status.
func TestManPage(t *testing.T) {
	var page strings.Builder
	if code := run([]string{"help", "-man"}, &page, &strings.Builder{}); code != 0 {
		t.Fatalf("help -man: exit %d", code)
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff to read the page")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww")
	cmd.Stdin = strings.NewReader(page.String())
	var out, warnings bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &warnings
	if err := cmd.Run(); err != nil || warnings.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, warnings.String())
	}
	text := out.String()
	// groff marks up bold by overstriking (a letter, a backspace, the
	// letter again): keep the letters.
	text = regexp.MustCompile(".\b").ReplaceAllString(text, "")
	for _, w := range []string{"NAME", "SYNOPSIS", "EXIT STATUS", "/etc/iwalb/iwalb.yaml"} {
		if !strings.Contains(text, w) {
			t.Errorf("the rendered page lacks %q:\n%s", w, text)
		}
	}
	for _, d := range commandDocs {
		if !strings.Contains(page.String(), ".B "+strings.ReplaceAll(d.synopsis, "-", `\-`)) {
			t.Errorf("the page lacks the command %s", d.name)
		}
	}
}
