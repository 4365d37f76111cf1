// The OpenAPI page: renders /openapi.json with plain DOM code (Swagger UI would come from a CDN).
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function details(title, obj) {
  const d = el("details");
  d.append(el("summary", title), el("pre", JSON.stringify(obj, null, 2)));
  return d;
}

fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  document.getElementById("version").textContent = `${spec.info.title} ${spec.info.version}`;
  const ops = document.getElementById("ops");
  ops.replaceChildren();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el("div", null, "op");
      const h = el("div");
      h.append(el("span", method.toUpperCase(), "method"), el("span", path, "path"), el("span", "  " + (op.summary || ""), "muted"));
      box.append(h);
      if (op.description) box.append(el("p", op.description));
      if (op.requestBody) {
        for (const [type, media] of Object.entries(op.requestBody.content || {})) box.append(details(`request body: ${type}`, media.schema || {}));
      }
      if (op.responses) box.append(details("responses", op.responses));
      ops.append(box);
    }
  }
}).catch((e) => { document.getElementById("ops").textContent = `cannot load /openapi.json: ${e}`; });
