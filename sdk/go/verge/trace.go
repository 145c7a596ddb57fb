package verge

// Span is a span the function started in the trace of the request it
// serves (docs/observability.md). Spans cost a host call each; when the
// request is not traced they record nothing. Tracing never fails a
// request: the calls report no errors, and a span left open ends with the
// request.
type Span struct{ h uint32 }

// StartSpan starts a span as a child of the function's own execution.
func StartSpan(name string) Span { return Span{}.Child(name) }

// Child starts a span under s.
func (s Span) Child(name string) Span {
	h, st := sysSpanStart(s.h, name)
	if st != statusOK {
		return Span{} // attributes then go on the execution span
	}
	return Span{h: h}
}

// SetAttribute sets a string attribute on the span.
func (s Span) SetAttribute(key, value string) { sysSpanAttr(s.h, key, value) }

// End ends the span; ending it twice, or ending the zero Span, does nothing.
func (s Span) End() {
	if s.h != 0 {
		sysSpanEnd(s.h)
	}
}

// SetAttribute sets a string attribute on the span of the function's
// execution.
func SetAttribute(key, value string) { Span{}.SetAttribute(key, value) }
