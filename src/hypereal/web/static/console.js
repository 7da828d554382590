// The console's own script: small enhancements of server-rendered pages, and the playground.
// Text from the server or from users is only ever put in the page as text (textContent), and
// requests that change something carry the session's CSRF token in X-CSRF-Token.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const headers = { "X-CSRF-Token": csrf, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  return fetch(path, { ...options, headers, credentials: "same-origin" });
}

async function errorOf(response) {
  try {
    const body = await response.json();
    const error = body.error;
    return typeof error === "string" ? error : error?.message || JSON.stringify(body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// ------------------------------------------------------------------ small enhancements

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!confirm(form.dataset.confirm)) event.preventDefault();
  });
}

for (const bar of document.querySelectorAll("[data-fill]")) {
  bar.style.width = `${Math.min(100, Number(bar.dataset.fill))}%`;
}

const PALETTE = ["#2149b8", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4b5563"];

for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
  const data = JSON.parse(document.getElementById(canvas.dataset.source).textContent);
  if (!window.Chart) continue;
  const stacked = canvas.dataset.chart === "stacked";
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: stacked ? data.labels.map((day) => day.slice(5)) : data.labels,
      datasets: data.series.map((series, index) => ({
        label: series.label,
        data: series.values,
        backgroundColor: stacked ? PALETTE[index % PALETTE.length] : PALETTE,
        maxBarThickness: 28,
      })),
    },
    options: {
      indexAxis: stacked ? "x" : "y",
      maintainAspectRatio: false,
      animation: false,
      plugins: { legend: { display: stacked } },
      scales: { x: { stacked }, y: { stacked, beginAtZero: true } },
    },
  });
}

// Pages listing jobs still running look again every few seconds and reload once one has ended.
const watched = document.querySelectorAll("[data-refresh-running] [data-status='processing'], [data-refresh-running][data-status='processing']");
if (watched.length) {
  const ids = [...watched].map((node) => node.dataset.job);
  const timer = setInterval(async () => {
    for (const id of ids) {
      const response = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
      if (response.ok && (await response.json()).status !== "processing") {
        clearInterval(timer);
        location.reload();
        return;
      }
    }
  }, 3000);
}

// ------------------------------------------------------------------ playground: chat

function curlFor(path, body) {
  const shown = JSON.stringify(body, (key, value) =>
    typeof value === "string" && value.startsWith("data:") && value.length > 120
      ? `${value.slice(0, 60)}…(${value.length} characters)`
      : value, 2);
  return `curl -X POST ${playground?.origin ?? location.origin}${path} \\\n` +
    `  -H "Authorization: Bearer $HYPEREAL_API_KEY" -H "Content-Type: application/json" \\\n` +
    `  -d '${shown.replaceAll("'", "'\\''")}'`;
}

const playground = document.getElementById("playground-data")
  ? JSON.parse(document.getElementById("playground-data").textContent)
  : null;

const chatForm = document.getElementById("chat-form");
if (chatForm) {
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-input");
  const messages = [];
  const turn = (role, text) => {
    const body = element("span", { text });
    log.append(element("p", { class: "turn", "data-role": role }, element("strong", { text: role }), body));
    log.scrollTop = log.scrollHeight;
    return body;
  };
  const showCurl = (body) => { document.getElementById("chat-curl").textContent = curlFor("/api/v1/chat/completions", body); };
  showCurl({ model: chatForm.model.value, messages: [{ role: "user", content: "Hello!" }], stream: true });
  document.getElementById("chat-reset").addEventListener("click", () => { messages.length = 0; log.replaceChildren(); });
  chatForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    messages.push({ role: "user", content: text });
    turn("user", text);
    const stream = document.getElementById("chat-stream").checked;
    const body = { model: chatForm.model.value, messages: [...messages], stream };
    showCurl(body);
    const answer = turn("assistant", "");
    const submit = chatForm.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const response = await api("/api/v1/chat/completions", { method: "POST", json: body });
      if (!response.ok) throw new Error(await errorOf(response));
      if (!stream) {
        answer.textContent = (await response.json()).choices[0].message.content ?? "";
      } else {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let pending = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          pending += value;
          const lines = pending.split("\n");
          pending = lines.pop();
          for (const line of lines) {
            if (!line.startsWith("data:") || line.includes("[DONE]")) continue;
            const chunk = JSON.parse(line.slice(5));
            if (chunk.error) throw new Error(chunk.error.message || "The stream failed");
            answer.textContent += chunk.choices?.[0]?.delta?.content ?? "";
          }
        }
      }
      messages.push({ role: "assistant", content: answer.textContent });
    } catch (error) {
      answer.textContent = `Error: ${error.message}`;
      answer.parentElement.classList.add("error");
    } finally {
      submit.disabled = false;
    }
  });
}

// ------------------------------------------------------------------ playground: media

const mediaForm = document.getElementById("media-form");
if (mediaForm && playground) {
  const { models, inputs } = playground.media;
  const select = document.getElementById("media-model");
  const fields = document.getElementById("media-fields");
  const price = document.getElementById("media-price");
  const priceNote = document.getElementById("media-price-note");
  const result = document.getElementById("media-result");
  const curl = document.getElementById("media-curl");
  let category = document.querySelector("#media-tabs [aria-pressed=true]")?.dataset.category;

  const fileKinds = { image: "image", images: "image", audio: "audio" };

  function field(name, param) {
    const id = `param-${name}`;
    const label = element("label", { for: id, text: name }, param.required ? element("span", { class: "hint", text: " (required)" }) : null);
    if (param.description) label.append(element("span", { class: "hint", text: ` — ${param.description}` }));
    const wrap = element("div", { class: "param", "data-param": name, "data-type": param.type });
    wrap.append(label);
    if (fileKinds[param.type]) {
      const kind = fileKinds[param.type];
      const url = element("input", { id, name, type: "url", placeholder: "https://… or pick below", required: param.required && false });
      const pick = element("select", { id: `${id}-pick`, "aria-label": `${name}: one of your generations` });
      pick.append(element("option", { value: "", text: "— or one of your generations —" }));
      for (const option of inputs.filter((item) => item.kind === kind)) pick.append(element("option", { value: option.url, text: option.label }));
      const file = element("input", { id: `${id}-file`, type: "file", accept: `${kind}/*`, "aria-label": `${name}: a file from this computer` });
      wrap.append(url, pick, file);
      return wrap;
    }
    let control;
    if (param.enum) {
      control = element("select", { id, name });
      for (const value of param.enum) control.append(element("option", { value, text: String(value), selected: value === param.default }));
    } else if (param.type === "boolean") {
      control = element("input", { id, name, type: "checkbox", checked: Boolean(param.default) });
    } else if (param.type === "integer" || param.type === "number") {
      control = element("input", {
        id, name, type: "number", min: param.minimum, max: param.maximum,
        step: param.type === "integer" ? 1 : "any", value: param.default ?? "",
      });
    } else if (param.type === "string" && (name === "prompt" || name === "text" || (param.max_length ?? 0) > 200)) {
      control = element("textarea", { id, name, maxlength: param.max_length, required: param.required });
      control.value = param.default ?? "";
    } else {
      control = element("input", { id, name, type: "text", maxlength: param.max_length, placeholder: param.type === "array" || param.type === "object" ? "JSON" : "" });
      control.value = param.default !== undefined && typeof param.default !== "object" ? param.default : "";
    }
    wrap.append(control);
    return wrap;
  }

  function current() { return models.find((model) => model.id === select.value); }

  function showModels() {
    select.replaceChildren();
    for (const model of models.filter((item) => item.category === category)) {
      select.append(element("option", { value: model.id, disabled: !model.available, text: `${model.name} — ${model.price_label}${model.available ? "" : " (not configured)"}` }));
    }
    const firstAvailable = [...select.options].find((option) => !option.disabled);
    if (firstAvailable) select.value = firstAvailable.value;
    showFields();
  }

  function showFields() {
    const model = current();
    fields.replaceChildren();
    document.getElementById("media-description").textContent = model?.description ?? "";
    if (!model) return;
    for (const param of model.params) fields.append(field(param.name, param));
    quoteSoon();
  }

  function dataUri(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  // The form as the API's `input`: input files chosen from earlier generations or this computer
  // travel as data: URIs, since the server does not fetch its own addresses on a user's behalf.
  async function collect(withFiles) {
    const model = current();
    const values = {};
    for (const wrap of fields.querySelectorAll("[data-param]")) {
      const name = wrap.dataset.param;
      const type = wrap.dataset.type;
      if (fileKinds[type]) {
        let value = wrap.querySelector("input[type=url]").value.trim();
        const picked = wrap.querySelector("select").value;
        const file = wrap.querySelector("input[type=file]").files[0];
        if (withFiles && file) value = await dataUri(file);
        else if (withFiles && picked) value = await dataUri(await (await fetch(picked)).blob());
        else if (!value && (file || picked)) value = "data:,(the file chosen)";  // read only on submit
        if (value) values[name] = type === "images" ? [value] : value;
        continue;
      }
      const control = wrap.querySelector("input, select, textarea");
      if (control.type === "checkbox") values[name] = control.checked;
      else if (control.value === "") continue;
      else if (type === "integer" || type === "number") values[name] = Number(control.value);
      else if (type === "array" || type === "object") {
        try { values[name] = JSON.parse(control.value); } catch { values[name] = control.value; }
      } else if (typeof model.params.find((param) => param.name === name).enum?.[0] === "number") values[name] = Number(control.value);
      else values[name] = control.value;
    }
    return values;
  }

  function bodyFor(model, values) {
    return model.flat ? { model: model.id, ...values } : { model: model.id, input: values };
  }

  let quoteTimer = null;
  function quoteSoon() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(quote, 250);
  }

  async function quote() {
    const model = current();
    if (!model) return;
    const values = await collect(false);
    curl.textContent = curlFor(model.endpoint, bodyFor(model, values));
    const response = await api("/playground/quote", { method: "POST", json: { model: model.id, input: values } });
    const answer = await response.json();
    if (!response.ok) {
      price.textContent = "—";
      priceNote.textContent = answer.error;
      return;
    }
    price.textContent = `${answer.credits} credit${answer.credits === 1 ? "" : "s"}`;
    priceNote.textContent = answer.incomplete ? `(to complete: ${answer.incomplete})` : "";
  }

  function preview(kind, url, text) {
    if (text) return element("p", { class: "transcript", "data-kind": "transcript", text });
    if (kind === "image") return element("img", { src: url, alt: "Generated image", "data-kind": "image" });
    if (kind === "video") return element("video", { src: url, controls: true, playsinline: true, muted: true, "data-kind": "video" });
    if (kind === "audio") return element("audio", { src: url, controls: true, "data-kind": "audio" });
    if (kind === "3d") return element("model-viewer", { src: url, alt: "Generated 3D model", "camera-controls": true, "auto-rotate": true, "data-kind": "model" });
    return element("a", { href: url, text: "Download the output" });
  }

  async function finished(jobId) {
    for (;;) {
      const response = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
      if (!response.ok) throw new Error(await errorOf(response));
      const job = await response.json();
      if (job.status !== "processing") return job;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  for (const tab of document.querySelectorAll("#media-tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#media-tabs button")) other.setAttribute("aria-pressed", String(other === tab));
      category = tab.dataset.category;
      showModels();
    });
  }
  select.addEventListener("change", showFields);
  mediaForm.addEventListener("input", quoteSoon);
  mediaForm.addEventListener("change", quoteSoon);

  mediaForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const model = current();
    const button = document.getElementById("media-submit");
    button.disabled = true;
    result.replaceChildren(element("p", { class: "muted", text: "Working…" }));
    try {
      const body = bodyFor(model, await collect(true));
      curl.textContent = curlFor(model.endpoint, body);
      const response = await api(model.endpoint, { method: "POST", json: body });
      if (!response.ok && response.status !== 202) throw new Error(await errorOf(response));
      const answer = await response.json();
      const job = await finished(answer.jobId);
      if (job.status !== "completed") throw new Error(job.error || `The job ${job.status}`);
      const kind = model.category === "image-edit" ? "image" : model.category;
      if ((kind === "image" || kind === "audio") && job.outputUrl) {
        inputs.unshift({ url: job.outputUrl, kind, label: `${model.id}: just made` });  // offered as input from now on
      }
      result.replaceChildren(
        element("div", { class: "viewer" }, preview(kind, job.outputUrl, job.text)),
        element("p", {}, element("span", { text: `${job.creditsUsed} credit${job.creditsUsed === 1 ? "" : "s"} · ` }), element("a", { href: `/generations/${job.jobId}`, text: "Open in the gallery" })),
      );
    } catch (error) {
      result.replaceChildren(element("p", { class: "error", role: "alert", text: error.message }));
    } finally {
      button.disabled = false;
    }
  });

  showModels();
}
