// Allowance's one script. Pages carry no inline scripts or handlers (the Content-Security-Policy
// allows scripts from our own origin only); behaviour hangs on data attributes instead.
(function () {
  "use strict";

  // The sidebar: open beside the page on wide screens, folded under "Menu" on phones (it is open
  // in the HTML, so it works without JavaScript).
  function fitSidebar() {
    var menu = document.querySelector(".sidebar-toggle");
    if (!menu) return;
    var narrow = window.matchMedia("(max-width: 760px)");
    var fit = function () { menu.open = !narrow.matches; };
    fit();
    narrow.addEventListener("change", fit);
  }

  // A dialog opens when htmx swaps content into its body (the links that fill it also work as plain
  // links to a full page), and closes when an answer leaves its body empty (the action is done and
  // its results were swapped in elsewhere, out of band). A part swapped inside an open dialog (a
  // preview arriving late) neither opens nor closes it: it may arrive after the dialog was closed.
  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = event.target.parentElement;
    if (!dialog || dialog.tagName !== "DIALOG") return;
    if (!event.target.innerHTML.trim()) {
      if (dialog.open) dialog.close();
    } else if (!dialog.open) {
      dialog.showModal();
    }
  });

  // An open menu (<details class="menu">: a row's actions) closes with Escape, focus back on its
  // button, and when a click lands outside it: left open, its panel covers the rows below.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    // Escape in a modal dialog closes the dialog only: the browser then puts focus back on the
    // dialog's opener ("Edit client" in a row's menu), which must still be there to take it.
    if (document.querySelector("dialog[open]")) return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      var inside = menu.contains(document.activeElement);
      menu.open = false;
      if (inside) menu.querySelector("summary").focus();
    });
  });

  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
    // [data-confirm="question"]: ask before the click goes through.
    var asking = event.target.closest("[data-confirm]");
    if (asking && !window.confirm(asking.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    // [data-close-dialog]: close the dialog around it instead of following the link.
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) {
        event.preventDefault();
        dialog.close();
      }
      return;
    }
    // [data-dismiss]: remove the message or banner it sits in.
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      event.preventDefault();
      var box = dismiss.closest("[data-dismissible]");
      if (box) box.remove();
    }
  });

  // A filter form that pushes its URL (hx-push-url) shows, after Back or Forward, the filters of
  // the URL it returns to: htmx restores the page from a copy of its markup, and what was typed or
  // picked lives in properties, not in that markup, so the form would disagree with its results.
  document.addEventListener("htmx:historyRestore", function () {
    var params = new URLSearchParams(window.location.search);
    document.querySelectorAll("form[hx-get][hx-push-url=true]").forEach(function (form) {
      Array.prototype.forEach.call(form.elements, function (field) {
        if (!field.name || field.type === "submit" || field.type === "button") return;
        if (field.type === "checkbox" || field.type === "radio") {
          field.checked = params.has(field.name) ? params.getAll(field.name).indexOf(field.value) >= 0 : field.defaultChecked;
          return;
        }
        if (params.has(field.name)) {
          field.value = params.get(field.name);
        } else if (field.tagName === "SELECT") {  // not in the URL: the value the page came with
          Array.prototype.forEach.call(field.options, function (option) { option.selected = option.defaultSelected; });
        } else {
          field.value = field.defaultValue;
        }
        if (field.tagName === "SELECT" && field.selectedIndex < 0) field.selectedIndex = 0;
      });
    });
  });

  // [data-show-when="name=value"]: shown only while the radio button `name` has `value` checked
  // (the "On custom date" field of Apply subscription updates).
  function syncConditional(root) {
    (root || document).querySelectorAll("[data-show-when]").forEach(function (el) {
      var parts = el.getAttribute("data-show-when").split("=");
      var form = el.closest("form") || document;
      var checked = form.querySelector('input[name="' + parts[0] + '"]:checked');
      el.hidden = !(checked && checked.value === parts[1]);
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("input[type=radio]")) syncConditional(event.target.form);
  });
  document.addEventListener("htmx:afterSwap", function (event) { syncConditional(event.target); });

  // [data-checkout-watch="status URL"] with [data-watch-forms="selector"]: when a matching form is
  // submitted (Subscribe opens the checkout in a new tab), this tab shows the note and lets the
  // status fragment take over: it polls itself and swaps in the updated page once the payment lands.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    document.querySelectorAll("[data-checkout-watch]").forEach(function (watch) {
      var forms = watch.getAttribute("data-watch-forms");
      if (!forms || !form.matches || !form.matches(forms)) return;
      watch.hidden = false;
      if (window.htmx) {
        window.htmx.ajax("GET", watch.getAttribute("data-checkout-watch"), { target: watch, swap: "outerHTML" });
      }
    });
  });

  // <canvas data-chart="id">: a stacked bar chart of the JSON in <script id="id"> (json_script),
  // {labels, datasets: [{label, data: ["1.5", ...]}]}, drawn with the vendored Chart.js when the
  // page loads it (the page keeps the same figures in a table for anyone without JavaScript).
  var PALETTE = ["#4f46e5", "#0f7b4f", "#9a5b00", "#1d5fbf", "#b42318"];
  function drawCharts(root) {
    if (!window.Chart) return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source || canvas.getAttribute("data-drawn")) return;
      var data = JSON.parse(source.textContent);
      canvas.setAttribute("data-drawn", "true");
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: data.datasets.map(function (set, i) {
            return { label: set.label, data: set.data.map(Number), backgroundColor: PALETTE[i % PALETTE.length] };
          })
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "Credits" } } }
        }
      });
    });
  }

  // After every deferred script (Chart.js comes after this one in the page).
  window.addEventListener("load", function () { drawCharts(); });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { fitSidebar(); syncConditional(); });
  } else {
    fitSidebar();
    syncConditional();
  }
})();
