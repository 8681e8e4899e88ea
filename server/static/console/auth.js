// auth.js: sign in and register (one form, two buttons' worth of modes).
import { h, mount, errorBox, showError } from "./dom.js";

export const NAME = "auth";

/** @param {any} ctx @param {HTMLElement} main */
export function render(ctx, main) {
  ctx.crumbs([["Sign in", null]]);
  let mode = "login";
  const email = h("input", { id: "email", type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", type: "password", name: "password", autocomplete: "current-password", required: true, minLength: 8 });
  const name = h("input", { id: "name", type: "text", name: "name", autocomplete: "name" });
  const nameRow = h("p", { hidden: true }, h("label", { for: "name" }, "Name (optional)"), name);
  const submit = h("button", { type: "submit", id: "auth-submit", class: "primary" }, "Sign in");
  const toggle = h("button", { type: "button", id: "auth-toggle", class: "link" }, "Create an account");
  const title = h("h1", {}, "Sign in");
  const error = errorBox();

  const setMode = (next) => {
    mode = next;
    const register = mode === "register";
    title.textContent = register ? "Create an account" : "Sign in";
    submit.textContent = register ? "Register" : "Sign in";
    toggle.textContent = register ? "I have an account" : "Create an account";
    nameRow.hidden = !register;
    password.setAttribute("autocomplete", register ? "new-password" : "current-password");
    showError(error, null);
  };
  toggle.addEventListener("click", () => setMode(mode === "login" ? "register" : "login"));

  const form = h("form", {
    class: "card narrow", id: "auth-form",
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      showError(error, null);
      try {
        const account = { email: email.value, password: password.value };
        const user = mode === "register"
          ? await ctx.api.register(name.value.trim() ? { ...account, name: name.value.trim() } : account)
          : await ctx.api.login(account);
        ctx.signedIn(user);
      } catch (err) {
        showError(error, err);
      } finally {
        submit.disabled = false;
      }
    },
  },
  title,
  h("p", {}, h("label", { for: "email" }, "Email"), email),
  h("p", {}, h("label", { for: "password" }, "Password (8 characters or more)"), password),
  nameRow, error,
  h("p", { class: "row" }, submit, toggle));
  mount(main, form);
  email.focus();
}
