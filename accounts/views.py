from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from sesame.utils import get_user

from core.errors import ApplicationError

from .backends import login_retry_after
from .links import gallery_link
from .models import User
from .ratelimits import limit_hit, limited_page
from .selectors import user_email_taken
from .services import EMAIL_TAKEN, GALLERY_LINK_SCOPE
from .services import guest_keep as guest_keep_service


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def validate_password_for_user(self, user, password_field_name: str = "password1") -> None:  # noqa: S107
        # Django puts the password rules' errors under the confirmation; they belong to the
        # password itself. A mismatch stays under the confirmation.
        super().validate_password_for_user(user, password_field_name=password_field_name)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Without an address there is no way back in after a forgotten password.
        self.fields["email"].required = True
        self.fields["email"].help_text = "Only used to reset your password."
        self.fields["username"].widget.attrs["autocomplete"] = "username"
        self.fields["email"].widget.attrs["autocomplete"] = "email"

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        # Worded as Django's own "A user with that username already exists.": taken, no more.
        if user_email_taken(email=email):
            raise ValidationError(EMAIL_TAKEN, code="unique")
        return email


class LoginView(auth_views.LoginView):
    """Django's login page; past the failed-login limit (counted by accounts.backends) it says
    so, with a 429, instead of "wrong password"."""

    def form_invalid(self, form) -> HttpResponse:
        wait = login_retry_after(self.request)
        if wait is not None:
            return limited_page(self.request, wait)
        return super().form_invalid(form)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset page; every request counts, per IP and per address, since each may send
    an email."""

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        wait = limit_hit(request, scope="password_reset", account=request.POST.get("email", ""))
        if wait is not None:
            return limited_page(request, wait)
        return super().post(request, *args, **kwargs)


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("my-photos")


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        if request.user.is_guest:
            return redirect("guest-keep")
        return redirect(_next_url(request))
    if request.method == "POST":
        wait = limit_hit(request, scope="signup", account=request.POST.get("email", ""))
        if wait is not None:
            return limited_page(request, wait)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                user = form.save()
        except IntegrityError:
            # Another sign-up took the address (or the name) since the form's checks.
            if user_email_taken(email=form.cleaned_data["email"]):
                form.add_error("email", EMAIL_TAKEN)
            else:
                form.add_error("username", "A user with that username already exists.")
        else:
            login(request, user, backend="accounts.backends.RateLimitedModelBackend")
            return redirect(_next_url(request))
    return render(request, "registration/signup.html", {"form": form, "next": _next_url(request)})


def gallery_link_open(request: HttpRequest, token: str) -> HttpResponse:
    """A private gallery link: sign its owner in on this device and open their gallery."""
    user = get_user(token, scope=GALLERY_LINK_SCOPE, update_last_login=False)
    if user is None:
        return render(request, "registration/link_invalid.html", status=404)
    login(request, user)  # with the backend that checked the link (django-sesame's)
    return redirect("my-photos")


@login_required
def my_link(request: HttpRequest) -> HttpResponse:
    """A guest's private link: shown to copy, or sent to an address they give (kept nowhere)."""
    if not request.user.is_guest:
        return redirect("my-photos")
    link = gallery_link(request, request.user)
    form = LinkEmailForm(request.POST or None)
    if request.method == "POST":
        if (
            wait := limit_hit(
                request, scope="password_reset", account=request.POST.get("email", "")
            )
        ) is not None:
            return limited_page(request, wait)
        if form.is_valid():
            send_mail(
                "Your FindMe photos",
                render_to_string("registration/gallery_link_email.txt", {"link": link}),
                None,
                [form.cleaned_data["email"]],
            )
            messages.success(request, f"We sent your link to {form.cleaned_data['email']}.")
            return redirect("my-link")
    return render(request, "registration/my_link.html", {"link": link, "form": form})


class LinkEmailForm(forms.Form):
    email = forms.EmailField(
        label="Your email address",
        help_text="Only used to send this link; FindMe does not keep it.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


@login_required
def guest_keep(request: HttpRequest) -> HttpResponse:
    """A guest adds a username, an email and a password: the same account, kept for good."""
    if not request.user.is_guest:
        return redirect("my-photos")
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        wait = limit_hit(request, scope="signup", account=request.POST.get("email", ""))
        if wait is not None:
            return limited_page(request, wait)
        if form.is_valid():
            try:
                user, _ = guest_keep_service(
                    user=request.user,
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password1"],
                )
            except ApplicationError as exc:
                for field, errors in exc.detail.items():
                    for error in errors:
                        form.add_error(field, error)
            else:
                update_session_auth_hash(request, user)
                messages.success(
                    request, "Your account is saved. Log in with your username and password."
                )
                return redirect("my-photos")
    return render(request, "registration/guest_keep.html", {"form": form})
