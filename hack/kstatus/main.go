// Command kstatus prints what the real kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status, the code
// Flux and `kubectl`-based tools use) computes for Kubernetes objects: the tests feed it objects read from
// the API server, instead of checking a hand-written copy of its rules.
//
//	kubectl get hsrc/x -o json | kstatus     # {"kind": ..., "namespace": ..., "name": ..., "status": "Current", "message": ...}
//	kubectl get hsrc,hem -o json | kstatus   # a List: a JSON array, one such object per item, in order
//
// Exit status: 0 on success, 1 if the input cannot be decoded or status.Compute fails (message on stderr).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func compute(u *unstructured.Unstructured) (verdict, error) {
	res, err := status.Compute(u)
	if err != nil {
		return verdict{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return verdict{
		Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(),
		Status: res.Status.String(), Message: res.Message,
	}, nil
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// UnstructuredJSONScheme keeps integers int64, as status.Compute expects for (observed)generation.
	obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, data)
	if err != nil {
		return fmt.Errorf("decoding stdin (a JSON object with apiVersion and kind, or a List): %w", err)
	}
	var result any
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		v, err := compute(o)
		if err != nil {
			return err
		}
		result = v
	case *unstructured.UnstructuredList:
		items := make([]verdict, 0, len(o.Items))
		for i := range o.Items {
			v, err := compute(&o.Items[i])
			if err != nil {
				return err
			}
			items = append(items, v)
		}
		result = items
	default:
		return fmt.Errorf("unexpected object %T", obj)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(result)
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < object.json   (reads one object or a List on stdin)")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
