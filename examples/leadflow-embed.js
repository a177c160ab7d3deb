/*
 * leadflow-embed.js: carries a visit's attribution into leadflow forms.
 *
 * Add it to any page with a form that posts to leadflow capture
 * (action=".../v1/forms/<form id>", or the attribute data-leadflow):
 *
 *   <script src="leadflow-embed.js" defer></script>
 *
 * It fills hidden inputs (created when missing) with:
 *   utm_source, utm_medium, utm_campaign, utm_term, utm_content,
 *   gclid, fbclid, msclkid, ttclid, li_fat_id, promo_code (from ?promo= or ?promo_code=),
 *   referrer, landing_page (the first page of the visit),
 *   lf_rendered_at (when the form was shown) and lf_elapsed_ms (time to fill, set on submit),
 *   idempotency_key (one per rendered form, so a double-click is one submission).
 * The first touch of a browser tab's session is kept in sessionStorage, so UTMs survive a
 * click from the landing page to a second page that holds the form. Values the visitor
 * typed (a promo code field) are never overwritten. The script works without any other
 * library and does nothing when JavaScript is off: the form still posts.
 */
(function () {
  "use strict";

  var PARAMS = [
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "gclid", "fbclid", "msclkid", "ttclid", "li_fat_id"
  ];
  var STORAGE_KEY = "leadflow_attribution";
  var MESSAGES = {
    invalid_field: "Please check this field.",
    too_many_fields: "The form sent too many fields.",
    field_too_long: "This answer is too long."
  };

  function readStored() {
    try {
      return JSON.parse(window.sessionStorage.getItem(STORAGE_KEY) || "null");
    } catch (e) {
      return null;
    }
  }

  function store(value) {
    try {
      window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(value));
    } catch (e) {
      /* private mode: attribution still comes from this page's URL */
    }
  }

  function currentAttribution() {
    var query = new URLSearchParams(window.location.search);
    var found = {};
    var any = false;
    PARAMS.forEach(function (name) {
      var value = query.get(name);
      if (value) {
        found[name] = value.slice(0, 500);
        any = true;
      }
    });
    var promo = query.get("promo_code") || query.get("promo");
    if (promo) {
      found.promo_code = promo.slice(0, 100);
      any = true;
    }
    var stored = readStored();
    // A new campaign click replaces the stored touch; a plain navigation keeps it.
    if (any || !stored) {
      found.referrer = document.referrer || "";
      found.landing_page = window.location.href;
      store(found);
      return found;
    }
    return stored;
  }

  function hidden(form, name) {
    var input = form.elements.namedItem(name);
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    return input;
  }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function isLeadflowForm(form) {
    return form.hasAttribute("data-leadflow") || /\/v1\/forms\/[^/]+$/.test(form.action || "");
  }

  function showError(form) {
    var query = new URLSearchParams(window.location.search);
    var code = query.get("lf_error");
    if (!code) {
      return;
    }
    var field = query.get("lf_field");
    var input = field ? form.elements.namedItem(field) : null;
    var message = document.createElement("p");
    message.className = "leadflow-error";
    message.setAttribute("role", "alert");
    message.textContent = MESSAGES[code] || "Please check the form and try again.";
    if (input && input.parentNode) {
      input.setAttribute("aria-invalid", "true");
      input.parentNode.insertBefore(message, input.nextSibling);
      input.focus();
    } else {
      form.insertBefore(message, form.firstChild);
    }
  }

  function prepare(form, attribution) {
    Object.keys(attribution).forEach(function (name) {
      var input = hidden(form, name);
      if (!input.value) {
        input.value = attribution[name];
      }
    });
    var rendered = Date.now();
    hidden(form, "lf_rendered_at").value = String(rendered);
    hidden(form, "idempotency_key").value = newKey();
    form.addEventListener("submit", function () {
      hidden(form, "lf_elapsed_ms").value = String(Date.now() - rendered);
      var buttons = form.querySelectorAll("button[type=submit], input[type=submit]");
      // Disable after the browser has taken the submission, not before.
      window.setTimeout(function () {
        Array.prototype.forEach.call(buttons, function (button) {
          button.disabled = true;
        });
      }, 0);
    });
    showError(form);
  }

  function init() {
    var attribution = currentAttribution();
    Array.prototype.forEach.call(document.forms, function (form) {
      if (isLeadflowForm(form)) {
        prepare(form, attribution);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
