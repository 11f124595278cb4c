from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .backends import login_retry_after
from .models import User
from .ratelimits import limit_hit, limited_page
from .selectors import user_email_taken
from .services import EMAIL_TAKEN


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

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
