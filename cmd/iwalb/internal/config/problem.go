package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a configuration file, located at the line
// an operator has to edit.
type Problem struct {
	// File is the configuration file's path as it was given to Load.
	File string
	// Line is the 1-based line of the offending key, or of the section a
	// required key is missing from; 0 when no line applies.
	Line int
	// Msg says what is wrong and, where it helps, how to fix it.
	Msg string
	// Warning marks a problem that `iwalb check` reports without failing
	// and `iwalb run` refuses: it depends on the machine the file is
	// installed on (a key file's permissions), not on the file's text.
	Warning bool
}

// String formats p as "FILE:LINE: reason", the form editors and grep jump to.
// A warning's reason starts with "warning: ".
func (p Problem) String() string {
	msg := p.Msg
	if p.Warning {
		msg = "warning: " + msg
	}
	if p.Line <= 0 {
		return fmt.Sprintf("%s: %s", p.File, msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, msg)
}

// Problems is the error Load returns for a file it refuses: every problem
// found, in line order, so that one run of `iwalb check` shows them all.
type Problems []Problem

// Error prints one "FILE:LINE: reason" line per problem.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sorted orders problems by line; problems at the same line keep the order
// in which they were found.
func (ps Problems) sorted() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return ps
}
