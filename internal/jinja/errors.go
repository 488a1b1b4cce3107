package jinja

// TemplateError mirrors jinja2.exceptions.TemplateError raised by HF's raise_exception.
type TemplateError struct{ Message string }

func (e *TemplateError) Error() string { return e.Message }
