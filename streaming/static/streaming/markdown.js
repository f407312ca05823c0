/**
 * markdown.js: a model's Markdown as safe HTML for the chat page.
 *
 * `marked` turns the Markdown into HTML and DOMPurify keeps only the tags and attributes
 * Markdown produces. Model text is untrusted, so on top of the sanitiser: raw HTML in the
 * text is shown as text (never parsed), images become links (no request leaves the page
 * because a model wrote a URL), and every link opens in a new tab with
 * `rel="noopener noreferrer nofollow"`. Both libraries are vendored under `vendor/`.
 *
 * @module streaming/markdown
 */

import DOMPurify from "dompurify";
import { Marked } from "marked";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHTML(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const marked = new Marked({
  gfm: true,
  breaks: true, // a model's single line breaks are meant as line breaks
  renderer: {
    // Raw HTML in model text is shown as the text it is.
    html({ text }) {
      return escapeHTML(text);
    },
    image({ href, text }) {
      const label = escapeHTML(text || href || "image");
      return `<a href="${escapeHTML(href || "")}">${label}</a>`;
    },
  },
});

/** Only what Markdown makes: no forms, media, styles, scripts or event handlers. */
const PURIFY = {
  ALLOWED_TAGS: [
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "align", "start", "class"],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/|\.\/|\.\.\/)/i,
};

DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
  // `class` only as marked writes it on code blocks: `language-<name>`.
  if (data.attrName === "class" && !/^language-[\w+#.-]+$/.test(data.attrValue)) {
    data.keepAttr = false;
  }
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
});

/**
 * `text` (Markdown, perhaps cut off mid-reply) as a sanitised DocumentFragment.
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function renderMarkdown(text) {
  const html = marked.parse(text, { async: false });
  return DOMPurify.sanitize(html, { ...PURIFY, RETURN_DOM_FRAGMENT: true });
}
